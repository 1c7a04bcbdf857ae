"""Wording tests: which of a campaign's notice versions each member is sent.

A campaign with variants splits its audience between two or more versions of one
notice, in shares staff set as whole basis points (1/100 of a percent, summing to
10,000). Each member falls in a bucket 0..9,999 computed from the campaign's id and
the member's id alone, and gets the variant whose cumulative range covers the bucket
(the variants in id order). So the split is:

- **disjoint** by construction: one bucket, one variant;
- **stable**: a fan-out that runs twice, a reminder wave, a resend all compute the
  same bucket for the same member (and the variants cannot change once the campaign is
  submitted without it going back to draft, nor at all once it sends);
- **unrelated to member order or jurisdiction**: the bucket is a polynomial hash of
  the id modulo the prime 2^31 - 1 (two squarings with affine steps between them),
  whose values behave like random ones over consecutive ids (tested), seeded per
  campaign so a member's part in one test says nothing about the next.

The fan-out computes the bucket in SQL (``db.fanout.variant_bucket_sql``) with the
same arithmetic as ``variant_bucket`` below, which is its reference: every
intermediate value stays under 2^62, so neither SQLite (whose integers silently
become floats past 2^63) nor PostgreSQL (which raises) ever overflows.
"""

from collections.abc import Sequence
from dataclasses import dataclass

# Shares are basis points: a whole split is 10,000, and the bucket has as many values.
BUCKETS = 10_000
PRIME = 2**31 - 1  # a Mersenne prime: every value below stays < 2^31
SEED_MULTIPLIER = 1_103_515_245
MEMBER_MULTIPLIER = 1_664_525_013
MIX_MULTIPLIER = 2_027_382_091 % PRIME
ADDENDS = (1_013_904_223, 374_761_393, 668_265_263)


def campaign_seed(campaign_id: int) -> int:
    """The campaign's offset into the hash (< PRIME)."""
    return (campaign_id * SEED_MULTIPLIER) % PRIME


def variant_bucket(*, campaign_id: int, member_id: int) -> int:
    """The member's bucket (0..BUCKETS-1) in the campaign: the reference for the SQL."""
    first = ((member_id % PRIME) * MEMBER_MULTIPLIER + campaign_seed(campaign_id)) % PRIME
    squared = (first * first + ADDENDS[0]) % PRIME
    mixed = (squared * MIX_MULTIPLIER + ADDENDS[1]) % PRIME
    return ((mixed * mixed + ADDENDS[2]) % PRIME) % BUCKETS


@dataclass(frozen=True)
class Split:
    """A campaign's variants in order: each version's id and its share (basis points)."""

    version_ids: tuple[int, ...]
    shares: tuple[int, ...]

    def __post_init__(self) -> None:
        # Checked where variants are set and at submission; a split that somehow is not
        # whole (a raw UPDATE) must not send anyone a version by accident.
        if len(self.version_ids) < 2 or sum(self.shares) != BUCKETS:
            raise ValueError(f"not a whole split: {self.shares} of {self.version_ids}")

    def ranges(self) -> list[tuple[int, int]]:
        """(version id, bucket bound, exclusive) in order: the cumulative ranges."""
        bound, out = 0, []
        for version_id, share in zip(self.version_ids, self.shares, strict=True):
            bound += share
            out.append((version_id, bound))
        return out

    def version_for(self, bucket: int) -> int:
        return next(version_id for version_id, bound in self.ranges() if bucket < bound)


@dataclass(frozen=True)
class VariantRow:
    """One variant as staff entered it, for ``split_problems``."""

    version_id: int | None
    notice_id: int | None
    share: int | None
    label: str = ""


def split_problems(*, notice_id: int | None, rows: Sequence[VariantRow]) -> list[str]:
    """What is wrong with a split staff entered (empty: nothing). No rows is no test."""
    if not rows:
        return []
    problems = []
    if len(rows) < 2:
        problems.append("A wording test needs at least two variants (or none).")
    seen: set[int] = set()
    for number, row in enumerate(rows, start=1):
        name = row.label or f"variant {number}"
        if row.version_id is None:
            problems.append(f"Choose a notice version for {name}.")
        elif row.version_id in seen:
            problems.append(f"{name}: each version may appear only once.")
        else:
            seen.add(row.version_id)
        if row.notice_id is not None and notice_id is not None and row.notice_id != notice_id:
            problems.append(
                f"{name} is a version of another notice: every variant must be "
                "a version of the campaign's notice."
            )
        if row.share is None:
            problems.append(f"Give {name} a share.")
        elif not 1 <= row.share <= BUCKETS - 1:
            problems.append(f"{name}: a share is between 0.01% and 99.99%.")
    total = sum(row.share or 0 for row in rows)
    if total != BUCKETS:
        problems.append(f"The shares add up to {percent(total)}, not 100%.")
    return problems


def percent(basis_points: int) -> str:
    """Basis points as staff read them: 3333 -> "33.33%", 5000 -> "50%"."""
    whole, part = divmod(basis_points, 100)
    return f"{whole}%" if not part else f"{whole}.{part:02d}%"
