"""What members see: the notice, unsubscribe and preference pages behind their links.

Pages read and record through the engine (``campaigns``, ``accounts``); the engine never
imports pages."""
