"""Set-up shared by the campaign-engine benchmarks (fanout, send_loop, throttle_accuracy).

- a PostgreSQL database of the calling script's own on the bench server, dropped,
  created and migrated (``database_prepare``), so the three scripts never touch
  each other's rows or those of the import/export benchmarks;
- members written in SQL (``members_seed``), countries and locales weighted like
  ``population``, ``created_at`` one minute apart in id order so that an audience of
  exactly the first N reachable members is a ``members_created_before`` cut-off;
- Django configured in-process for that database (``django_start``);
- a realistic notice (a few hundred words in five languages, Markdown with lists and
  links) and campaigns written directly in the state a benchmark needs;
- ``SinkBackend``: serialises each message to bytes as a real transport must, counts
  messages and bytes, keeps nothing.

Nothing here needs Django's settings at import time: the benchmark parents that
only orchestrate child processes import it without configuring Django.
"""

import os
import sys
from datetime import date, timedelta

import harness
import population
from django.core.mail.backends.base import BaseEmailBackend
from psycopg import sql

NOTICE_TITLE = "Bench: AI training notice"


# --- Database ----------------------------------------------------------------------


def database_url(name: str) -> str:
    """The bench server (from DATABASE_URL when it is PostgreSQL), database ``name``."""
    return harness.with_database(harness.bench_database_url(), name)


def database_prepare(url: str) -> None:
    """Drop, create and migrate the script's own database."""
    name = harness.database_name(url)
    with harness.connect(harness.with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    harness.database_migrate(url)


def _locale_pool_sql() -> str:
    """(code, jurisdiction, locale, domain, lo, hi): a country's weight split evenly
    between its locales, as [lo, hi) ranges on [0, 1) for ``random()``."""
    shares = [
        (country, locale, country.weight / len(country.locales))
        for country in population.COUNTRIES
        for locale in country.locales
    ]
    total = sum(share for *_, share in shares)
    values, low = [], 0.0
    for country, locale, share in shares:
        high = low + share / total
        domain = (country.domains or population.COMMON_DOMAINS)[0]
        values.append(
            f"('{country.code}', '{country.jurisdiction}', '{locale}', '{domain}',"
            f" {low!r}, {high!r})"
        )
        low = high
    return "VALUES " + ", ".join(values)


MEMBERS_SQL = """
INSERT INTO accounts_member (external_id, email, locale, country, jurisdiction,
    email_status, email_status_changed_at, unsubscribed_at, created_at, updated_at)
SELECT 'u' || substr(md5(g::text), 1, 16),
    (ARRAY[{first}])[1 + g % {n_first}] || '.' || (ARRAY[{last}])[1 + g / 7 % {n_last}]
        || g || '@' || CASE WHEN g % 3 = 0 THEN pool.domain
                            ELSE (ARRAY[{common}])[1 + g % {n_common}] END,
    pool.locale, pool.code, pool.jurisdiction,
    CASE WHEN {every} > 0 AND g % {every} = 0
         THEN (ARRAY['bounced', 'complained', 'ok'])[1 + g / {every} % 3]
         ELSE 'ok' END,
    CASE WHEN {every} > 0 AND g % {every} = 0 AND g / {every} % 3 < 2
         THEN timestamptz '2025-01-01' END,
    CASE WHEN {every} > 0 AND g % {every} = 0 AND g / {every} % 3 = 2
         THEN timestamptz '2025-01-01' END,
    timestamptz '2019-01-01' + g * interval '1 minute',
    timestamptz '2019-01-01' + g * interval '1 minute'
FROM (SELECT g, random() AS r FROM generate_series(1, {total}) AS g) AS s
JOIN ({pool}) AS pool (code, jurisdiction, locale, domain, lo, hi)
    ON s.r >= pool.lo AND s.r < pool.hi
ORDER BY g
"""


def _array(words) -> str:
    return ", ".join(f"'{w}'" for w in words)


def members_seed(conn, *, reachable: int, unreachable_every: int = 0) -> int:
    """Exactly ``reachable`` reachable members; with ``unreachable_every`` = k, every
    k-th id is bounced, complained or unsubscribed instead (extra rows).
    Returns the number of rows written. ANALYZEd, as autovacuum would have."""
    total = reachable
    while unreachable_every and total - total // unreachable_every < reachable:
        total += 1
    harness.members_reset(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT setseed(0.2024)")
        cur.execute(
            MEMBERS_SQL.format(
                first=_array(population.FIRST),
                n_first=len(population.FIRST),
                last=_array(population.LAST),
                n_last=len(population.LAST),
                common=_array(population.COMMON_DOMAINS),
                n_common=len(population.COMMON_DOMAINS),
                every=unreachable_every,
                total=total,
                pool=_locale_pool_sql(),
            )
        )
    conn.commit()
    harness.vacuum_analyze(conn, "accounts_member")
    return total


# --- Django --------------------------------------------------------------------------


def django_env(url: str, **extra: str) -> dict[str, str]:
    return {
        **harness.django_env(url),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "RENOTIFY_VAR_DIR": str(harness.OUT_DIR / "var"),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def django_start(url: str, **extra: str) -> None:
    """Configure Django in this process for database ``url`` (DEBUG off)."""
    os.environ.update(django_env(url, **extra))
    if str(harness.ROOT) not in sys.path:
        sys.path.insert(0, str(harness.ROOT))
    import django

    django.setup()


# --- A realistic notice --------------------------------------------------------------

NOTICE_TEXTS = {
    "en": (
        "How we will use your data to train AI models: your choice",
        """\
## How we will use your data to train AI models

From **1 March 2027**, we will start using some of the information you share on the
platform to train and improve the artificial intelligence (AI) models behind features
such as search suggestions, translation, recommendations and the writing assistant.

We are writing to you because the law where you live gives you the right to be told
about this in advance, and the right to object. You do not need to do anything if you
are happy for your data to be used. If you object, we will not use your data for this
purpose, and nothing else about your account will change.

### What data we plan to use

- public posts, comments and captions you have written since you joined;
- photos and videos you have shared publicly, with their descriptions;
- how you interact with public content, such as likes, shares and searches.

### What we will not use

- private messages between you and other members;
- content from the accounts of people under 18;
- your email address, phone number or payment details.

### Why we do this, and how we protect you

We rely on our legitimate interests to develop and improve our services. Before any
data is used we remove direct identifiers, filter out sensitive categories of
information and apply strict access controls. Models are tested so that they do not
reproduce personal information. You can read our full assessment in the
[privacy centre](https://example.com/privacy/ai-training).

### Your choice

You can object at any time, without giving a reason and without logging in, from the
link below. Objections received before the deadline shown in this email are honoured
before any of your data is used; later objections apply from the moment we receive
them.

If you have questions, write to our data protection officer at
[dpo@example.com](mailto:dpo@example.com) or contact your data protection authority.
""",
    ),
    "de": (
        "Wie wir Ihre Daten für das Training von KI-Modellen nutzen: Ihre Wahl",
        """\
## Wie wir Ihre Daten für das Training von KI-Modellen nutzen

Ab dem **1. März 2027** werden wir einige der Informationen, die Sie auf der Plattform
teilen, nutzen, um die Modelle künstlicher Intelligenz (KI) zu trainieren und zu
verbessern, die Funktionen wie Suchvorschläge, Übersetzungen, Empfehlungen und den
Schreibassistenten ermöglichen.

Wir schreiben Ihnen, weil das Recht Ihres Landes Ihnen das Recht gibt, vorab darüber
informiert zu werden und zu widersprechen. Sie müssen nichts tun, wenn Sie mit der
Nutzung Ihrer Daten einverstanden sind. Wenn Sie widersprechen, nutzen wir Ihre Daten
nicht für diesen Zweck, und an Ihrem Konto ändert sich sonst nichts.

### Welche Daten wir nutzen möchten

- öffentliche Beiträge, Kommentare und Bildunterschriften seit Ihrer Anmeldung;
- Fotos und Videos, die Sie öffentlich geteilt haben, mit ihren Beschreibungen;
- wie Sie mit öffentlichen Inhalten umgehen, etwa Likes, Weiterleitungen und Suchen.

### Was wir nicht nutzen

- private Nachrichten zwischen Ihnen und anderen Mitgliedern;
- Inhalte aus Konten von Personen unter 18 Jahren;
- Ihre E-Mail-Adresse, Telefonnummer oder Zahlungsdaten.

### Warum wir das tun und wie wir Sie schützen

Wir stützen uns auf unser berechtigtes Interesse, unsere Dienste zu entwickeln und zu
verbessern. Bevor Daten genutzt werden, entfernen wir direkte Kennungen, filtern
besondere Kategorien von Informationen heraus und beschränken den Zugriff streng.
Die Modelle werden daraufhin geprüft, dass sie keine personenbezogenen Daten
wiedergeben. Unsere vollständige Abwägung finden Sie im
[Datenschutzcenter](https://example.com/privacy/ai-training).

### Ihre Wahl

Sie können jederzeit über den folgenden Link widersprechen, ohne Begründung und ohne
Anmeldung. Widersprüche, die vor der in dieser E-Mail genannten Frist eingehen, werden
berücksichtigt, bevor Ihre Daten genutzt werden; spätere gelten ab ihrem Eingang.

Bei Fragen schreiben Sie an unsere Datenschutzbeauftragte unter
[dpo@example.com](mailto:dpo@example.com) oder wenden Sie sich an Ihre
Datenschutzaufsichtsbehörde.
""",
    ),
    "fr": (
        "Comment nous utiliserons vos données pour entraîner l'IA : à vous de choisir",
        """\
## Comment nous utiliserons vos données pour entraîner des modèles d'IA

À partir du **1er mars 2027**, nous commencerons à utiliser certaines des informations
que vous partagez sur la plateforme pour entraîner et améliorer les modèles
d'intelligence artificielle (IA) qui alimentent des fonctions comme les suggestions de
recherche, la traduction, les recommandations et l'assistant de rédaction.

Nous vous écrivons parce que la loi de votre pays vous donne le droit d'en être
informé à l'avance et le droit de vous y opposer. Vous n'avez rien à faire si vous
acceptez que vos données soient utilisées. Si vous vous y opposez, nous n'utiliserons
pas vos données à cette fin, et rien d'autre ne changera pour votre compte.

### Les données que nous prévoyons d'utiliser

- les publications, commentaires et légendes publics rédigés depuis votre inscription ;
- les photos et vidéos que vous avez partagées publiquement, avec leurs descriptions ;
- vos interactions avec les contenus publics : mentions j'aime, partages, recherches.

### Ce que nous n'utiliserons pas

- les messages privés échangés avec d'autres membres ;
- les contenus des comptes de personnes de moins de 18 ans ;
- votre adresse e-mail, votre numéro de téléphone ou vos données de paiement.

### Pourquoi nous le faisons et comment nous vous protégeons

Nous nous fondons sur notre intérêt légitime à développer et améliorer nos services.
Avant toute utilisation, nous supprimons les identifiants directs, écartons les
catégories sensibles d'informations et appliquons des contrôles d'accès stricts. Les
modèles sont testés pour qu'ils ne reproduisent pas de données personnelles. Notre
évaluation complète est disponible dans le
[centre de confidentialité](https://example.com/privacy/ai-training).

### Votre choix

Vous pouvez vous opposer à tout moment, sans motif et sans vous connecter, depuis le
lien ci-dessous. Les oppositions reçues avant la date limite indiquée dans cet e-mail
sont prises en compte avant toute utilisation de vos données ; les suivantes
s'appliquent dès leur réception.

Pour toute question, écrivez à notre délégué à la protection des données à
[dpo@example.com](mailto:dpo@example.com) ou contactez votre autorité de contrôle.
""",
    ),
    "es": (
        "Cómo usaremos sus datos para entrenar modelos de IA: usted decide",
        """\
## Cómo usaremos sus datos para entrenar modelos de IA

A partir del **1 de marzo de 2027**, empezaremos a usar parte de la información que
comparte en la plataforma para entrenar y mejorar los modelos de inteligencia
artificial (IA) de funciones como las sugerencias de búsqueda, la traducción, las
recomendaciones y el asistente de redacción.

Le escribimos porque la ley de su país le da derecho a ser informado con antelación y
a oponerse. No tiene que hacer nada si está de acuerdo con que usemos sus datos. Si se
opone, no usaremos sus datos para este fin y no cambiará nada más en su cuenta.

### Qué datos pensamos usar

- publicaciones, comentarios y pies de foto públicos escritos desde que se registró;
- fotos y vídeos que ha compartido públicamente, con sus descripciones;
- cómo interactúa con el contenido público: «me gusta», contenido compartido, búsquedas.

### Qué no usaremos

- los mensajes privados entre usted y otros miembros;
- el contenido de las cuentas de menores de 18 años;
- su dirección de correo electrónico, su teléfono o sus datos de pago.

### Por qué lo hacemos y cómo le protegemos

Nos basamos en nuestro interés legítimo en desarrollar y mejorar nuestros servicios.
Antes de usar ningún dato, eliminamos los identificadores directos, descartamos las
categorías sensibles de información y aplicamos controles de acceso estrictos. Los
modelos se prueban para que no reproduzcan información personal. Puede leer nuestra
evaluación completa en el
[centro de privacidad](https://example.com/privacy/ai-training).

### Su decisión

Puede oponerse en cualquier momento, sin dar motivos y sin iniciar sesión, desde el
enlace de abajo. Las oposiciones recibidas antes de la fecha límite indicada en este
correo se respetan antes de usar sus datos; las posteriores se aplican desde que las
recibimos.

Si tiene preguntas, escriba a nuestro delegado de protección de datos a
[dpo@example.com](mailto:dpo@example.com) o diríjase a su autoridad de protección de
datos.
""",
    ),
    "pl": (
        "Jak wykorzystamy Twoje dane do trenowania modeli AI: Twój wybór",
        """\
## Jak wykorzystamy Twoje dane do trenowania modeli AI

Od **1 marca 2027 r.** zaczniemy wykorzystywać część informacji, które udostępniasz na
platformie, do trenowania i ulepszania modeli sztucznej inteligencji (AI), na których
opierają się funkcje takie jak podpowiedzi wyszukiwania, tłumaczenia, rekomendacje i
asystent pisania.

Piszemy do Ciebie, ponieważ prawo Twojego kraju daje Ci prawo do wcześniejszej
informacji i do wniesienia sprzeciwu. Nie musisz nic robić, jeśli zgadzasz się na
wykorzystanie swoich danych. Jeśli wniesiesz sprzeciw, nie użyjemy Twoich danych w tym
celu, a nic innego na Twoim koncie się nie zmieni.

### Jakie dane zamierzamy wykorzystać

- publiczne posty, komentarze i podpisy napisane od czasu rejestracji;
- zdjęcia i filmy udostępnione publicznie wraz z ich opisami;
- sposób korzystania z treści publicznych, np. polubienia, udostępnienia i wyszukiwania.

### Czego nie wykorzystamy

- prywatnych wiadomości między Tobą a innymi członkami;
- treści z kont osób poniżej 18. roku życia;
- Twojego adresu e-mail, numeru telefonu ani danych płatniczych.

### Dlaczego to robimy i jak Cię chronimy

Opieramy się na naszym prawnie uzasadnionym interesie w rozwijaniu i ulepszaniu usług.
Zanim wykorzystamy jakiekolwiek dane, usuwamy bezpośrednie identyfikatory, odfiltrowujemy
szczególne kategorie informacji i stosujemy ścisłą kontrolę dostępu. Modele są
testowane, aby nie odtwarzały danych osobowych. Pełną ocenę znajdziesz w
[centrum prywatności](https://example.com/privacy/ai-training).

### Twój wybór

Możesz w każdej chwili wnieść sprzeciw, bez podawania przyczyny i bez logowania, za
pomocą poniższego linku. Sprzeciwy otrzymane przed terminem podanym w tej wiadomości
uwzględniamy przed wykorzystaniem Twoich danych; późniejsze obowiązują od chwili ich
otrzymania.

W razie pytań napisz do naszego inspektora ochrony danych:
[dpo@example.com](mailto:dpo@example.com) lub skontaktuj się z organem nadzorczym.
""",
    ),
}


def notice_version_create():
    """The realistic notice in five locales (English the default), or the one already
    created in this database: its compiled templates are cached by content hash."""
    from campaigns.models import Notice, NoticeText, NoticeVersion

    # The first version: a benchmark may add others to the notice (fanout's wording test).
    existing = NoticeVersion.objects.filter(notice__title=NOTICE_TITLE).order_by("number").first()
    if existing is not None:
        return existing
    notice = Notice.objects.create(title=NOTICE_TITLE)
    version = NoticeVersion.objects.create(
        notice=notice,
        default_locale="en",
        effective_date=date(2027, 3, 1),
        objection_deadline=date(2027, 2, 15),
    )
    for locale, (subject, body) in NOTICE_TEXTS.items():
        NoticeText.objects.create(
            version=version, locale=locale, subject=subject, body_markdown=body
        )
    return version


def audience_cutoff(reachable: int):
    """``members_created_before`` that selects exactly the first ``reachable`` reachable
    members (created_at grows with id)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT created_at + interval '1 second' FROM accounts_member"
            " WHERE email_status = 'ok' AND unsubscribed_at IS NULL"
            " ORDER BY id OFFSET %s LIMIT 1",
            [reachable - 1],
        )
        row = cursor.fetchone()
    if row is None:
        raise SystemExit(f"fewer than {reachable} reachable members in the bench database")
    return row[0]


def campaign_create(*, state: str, throttle_per_minute: int, audience: int | None = None):
    """A campaign of the realistic notice written directly in ``state`` (as the test
    factories do), for everyone or for the first ``audience`` reachable members."""
    from django.utils import timezone

    from campaigns.models import Campaign

    version = notice_version_create()
    return Campaign.objects.create(
        name="bench campaign",
        notice_version=version,
        state=state,
        # What an approval records: a start compares the texts with it.
        approved_text_hashes=version.text_hashes(),
        starts_at=timezone.now() - timedelta(minutes=1),
        throttle_per_minute=throttle_per_minute,
        members_created_before=audience_cutoff(audience) if audience else None,
    )


# --- A transport that does the work and keeps nothing ---------------------------------


class SinkBackend(BaseEmailBackend):
    """Serialises each message as SMTP would (``as_bytes`` with CRLF) and counts it.

    Counters are class-level: every connection of the process adds to them.
    """

    messages = 0
    bytes = 0

    def send_messages(self, email_messages) -> int:
        for message in email_messages:
            data = message.message().as_bytes(linesep="\r\n")
            SinkBackend.messages += 1
            SinkBackend.bytes += len(data)
        return len(email_messages)

    @classmethod
    def reset(cls) -> None:
        cls.messages, cls.bytes = 0, 0
