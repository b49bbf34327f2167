"""Fake secrets, one or more per redaction rule, as they would appear in code,
config, shells and diffs. Shared by the redaction unit tests and the
end-to-end test that plants them in a repository and checks the store.

Every value is realistic in *format* and fake in substance. Values are built
at import time from prefixes, concatenation and a seeded generator, so this
file itself holds no string a secret scanner would flag.

``CORPUS`` entries are ``(kind, secret_value, text)``: ``kind`` is the name of
the rule expected to fire (the marker reads ``[REDACTED:<kind>]``), and
``redact(text)`` must remove every occurrence of ``secret_value``.
``FILENAME_SAFE`` lists values that can also stand in a file name (no ``/``,
no NUL, short enough) and are recognised without any surrounding context.
"""

from __future__ import annotations

import base64
import json
import random

__all__ = ["CORPUS", "FILENAME_SAFE", "KINDS"]

_rng = random.Random(0x1A5E)  # fixed seed: the corpus is the same on every run

UP = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LO = "abcdefghijklmnopqrstuvwxyz"
DIG = "0123456789"
HEX = "0123456789abcdef"
ALNUM = UP + LO + DIG
B32 = UP + "234567"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"


def _r(alphabet: str, n: int) -> str:
    """n characters from alphabet, guaranteed to mix kinds where the alphabet allows."""
    while True:
        s = "".join(_rng.choice(alphabet) for _ in range(n))
        kinds = sum(
            any(c in group for c in s) for group in (UP, LO, DIG) if any(c in group for c in alphabet)
        )
        wanted = min(2, sum(1 for group in (UP, LO, DIG) if any(c in group for c in alphabet)))
        if kinds >= wanted:
            return s


def _b64url(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


# --- structured tokens -----------------------------------------------------

AWS_KEY_ID = "AK" + "IA" + _r(B32, 16)
AWS_SECRET = _r(ALNUM, 12) + "/" + _r(B64, 15) + "+" + _r(ALNUM, 11)  # 40 chars
GCP_API_KEY = "AI" + "za" + "Sy" + _r(URLSAFE, 33)
GCP_CLIENT_SECRET = "GOC" + "SPX-" + _r(URLSAFE, 28)
GOOGLE_ACCESS = "ya" + "29." + "a0A" + _r(URLSAFE, 60)
GH_TOKEN = "gh" + "p_" + _r(ALNUM, 36)
GH_OAUTH = "gh" + "o_" + _r(ALNUM, 36)
GH_FINE = "github" + "_pat_" + "11A" + _r(ALNUM, 19) + "_" + _r(ALNUM, 59)
GITLAB = "gl" + "pat-" + _r(URLSAFE, 20)
BITBUCKET = "AT" + "BB" + _r(ALNUM, 32) + _r(HEX, 8).upper()
ATLASSIAN = "ATA" + "TT3xFfGF0" + _r(URLSAFE, 180) + "=" + _r(HEX, 8).upper()
SLACK_BOT = "xo" + "xb-" + _r(DIG, 12) + "-" + _r(DIG, 13) + "-" + _r(ALNUM, 24)
SLACK_HOOK_PATH = "T0" + _r(UP + DIG, 8) + "/B0" + _r(UP + DIG, 8) + "/" + _r(ALNUM, 24)
DISCORD_HOOK = _r(URLSAFE, 68)
_discord_id = "11" + _r(DIG, 17)
DISCORD_BOT = (
    base64.b64encode(_discord_id.encode()).decode().rstrip("=")
    + "."
    + _r(URLSAFE, 6)
    + "."
    + _r(URLSAFE, 38)
)
TELEGRAM = _r(DIG, 10) + ":" + "AA" + _r(URLSAFE, 33)
STRIPE_LIVE = "sk" + "_live_" + _r(ALNUM, 24)
STRIPE_RESTRICTED = "rk" + "_live_" + _r(ALNUM, 24)
STRIPE_WHSEC = "wh" + "sec_" + _r(ALNUM, 32)
ANTHROPIC = "sk" + "-ant-" + "api03-" + _r(URLSAFE, 93) + "AA"
OPENAI = "sk" + "-proj-" + _r(URLSAFE, 64) + "T3Blbk" + "FJ" + _r(URLSAFE, 64)
GROQ = "gs" + "k_" + _r(ALNUM, 52)
REPLICATE = "r8" + "_" + _r(ALNUM, 37)
TWILIO_SK = "S" + "K" + _r(HEX, 32)
TWILIO_SID = "A" + "C" + _r(HEX, 32)
SENDGRID = "S" + "G." + _r(URLSAFE, 22) + "." + _r(URLSAFE, 43)
MAILGUN = "key" + "-" + _r(HEX, 32)
MAILCHIMP = _r(HEX, 32) + "-us" + "21"
NPM = "np" + "m_" + _r(ALNUM, 36)
PYPI = "py" + "pi-" + "AgEI" + "cHlwaS5vcmc" + _r(URLSAFE, 120)
RUBYGEMS = "ruby" + "gems_" + _r(HEX, 48)
DOCKERHUB = "dckr" + "_pat_" + _r(URLSAFE, 27)
HUGGINGFACE = "h" + "f_" + _r(UP + LO, 34)
SHOPIFY = "shp" + "at_" + _r(HEX, 32)
SQUARE = "sq0" + "atp-" + _r(URLSAFE, 22)
SQUARE_EAAA = "EA" + "AA" + _r(URLSAFE, 60)
DIGITALOCEAN = "do" + "p_v1_" + _r(HEX, 64)
DATABRICKS = "da" + "pi" + _r(HEX, 32)
VAULT = "hv" + "s." + "CAESI" + _r(URLSAFE, 90)
GRAFANA = "gl" + "sa_" + _r(ALNUM, 32) + "_" + _r(HEX, 8)
NEWRELIC = "NR" + "AK-" + _r(UP + DIG, 27)
LINEAR = "lin" + "_api_" + _r(ALNUM, 40)
NOTION = "nt" + "n_" + _r(DIG, 11) + _r(ALNUM, 35)
PLANETSCALE = "pscale" + "_tkn_" + _r(URLSAFE, 43)
PULUMI = "pu" + "l-" + _r(HEX, 40)
TERRAFORM = _r(ALNUM, 14) + ".atlas" + "v1." + _r(URLSAFE, 67)
DOPPLER = "dp" + ".st." + _r(ALNUM, 43)
POSTMAN = "PM" + "AK-" + _r(HEX, 24) + "-" + _r(HEX, 34)
SENTRY = "sntr" + "yu_" + _r(HEX, 64)
SUPABASE = "sb" + "p_" + _r(HEX, 40)
AGE = "AGE-" + "SECRET-KEY-1" + _r(BECH32, 58)
AZURE_ACCOUNT_KEY = _r(ALNUM, 40) + "+" + _r(B64, 43) + "=="
AZURE_SAS_SIG = _r(ALNUM, 30) + "%2B" + _r(ALNUM, 10) + "%3D"
AZURE_AD_SECRET = _r(ALNUM, 3) + "8Q" + "~" + _r(ALNUM + "_~.-", 33) + "a"
JWT = (
    _b64url({"alg": "HS256", "typ": "JWT"})
    + "."
    + _b64url({"sub": _r(DIG, 10), "name": "Fake User", "iat": 1700000000})
    + "."
    + _r(URLSAFE, 43)
)
DOCKER_AUTH = base64.b64encode(("ci-bot:" + _r(ALNUM, 20)).encode()).decode()
BASIC_AUTH = base64.b64encode(("admin:" + _r(ALNUM, 18)).encode()).decode()
BEARER = _r(ALNUM, 40)

# --- context-dependent values (passwords and the like) ---------------------

URL_PASSWORD = "pg-" + _r(ALNUM, 14)
NETRC_PASSWORD = "Nrc" + _r(ALNUM, 15) + "9"
SQL_PASSWORD = "Sq1!" + _r(ALNUM, 12)
CLI_PASSWORD = "Cl1-" + _r(ALNUM, 14)
CURL_PASSWORD = "Cu" + _r(ALNUM, 14) + "7x"
MYSQL_PASSWORD = "My" + _r(ALNUM, 12) + "5q"
XML_PASSWORD = "Xm1!" + _r(ALNUM, 14)
PW_ENV = "Env-" + _r(ALNUM, 14)
PW_PY = "Py!" + _r(ALNUM, 15)
PW_YAML = "yml-" + _r(ALNUM, 14) + "-4"
PW_JSON = "Js0n" + _r(ALNUM, 16)
PW_PHRASE = "correct " + _r(LO, 6) + " battery " + _r(LO, 7)
SECRET_VAL = _r(ALNUM, 22) + "-" + _r(ALNUM, 8)
DJANGO_SECRET = "django-insecure-" + _r(LO + DIG + "!@#%^*(-_=+)", 50).replace("'", "")
TOKEN_VAL = _r(ALNUM, 28) + "." + _r(ALNUM, 12)
API_KEY_VAL = "k3y-" + _r(HEX, 24)
API_KEY_JSON = _r(ALNUM, 32)
QUERY_TOKEN = _r(ALNUM, 24)

# --- private keys ------------------------------------------------------------

_PK_BODY = ["MIIEow" + "IBAAKCAQEA" + _r(B64, 48)] + [_r(B64, 64) for _ in range(5)] + [_r(B64, 22) + "=="]
_PK_PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(_PK_BODY) + "\n-----END RSA PRIVATE KEY-----\n"
_OPENSSH_BODY = ["b3BlbnNzaC1rZXktdjEAAAAA" + _r(B64, 46)] + [_r(B64, 70) for _ in range(3)]
_SA_KEY_BODY = ["MIIEvg" + "IBADANBgkqhkiG9w0BAQEFAASC" + _r(B64, 32)] + [_r(B64, 64) for _ in range(3)]
_SA_JSON = json.dumps(
    {
        "type": "service_account",
        "project_id": "fake-project-123",
        "private_key_id": _r(HEX, 40),
        "private_key": "-----BEGIN PRIVATE KEY-----\n" + "\n".join(_SA_KEY_BODY) + "\n-----END PRIVATE KEY-----\n",
        "client_email": "svc@fake-project-123.iam.gserviceaccount.com",
    }
)
_EC_BODY = [_r(B64, 64), _r(B64, 32)]
_PGP_BODY = ["lQVYBG" + _r(B64, 58), _r(B64, 64)]


CORPUS: list[tuple[str, str, str]] = [
    # private keys: whole, truncated, JSON-escaped, diff-prefixed
    ("private-key", _PK_BODY[2], "deploy key:\n" + _PK_PEM + "done\n"),
    (
        "private-key",
        _PK_BODY[1],
        "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(_PK_BODY[:3]),  # truncated: no END
    ),
    ("private-key", _SA_KEY_BODY[1], _SA_JSON),
    (
        "private-key",
        _OPENSSH_BODY[2],
        "@@ -0,0 +1,6 @@\n+-----BEGIN OPENSSH PRIVATE KEY-----\n"
        + "\n".join("+" + b for b in _OPENSSH_BODY)
        + "\n+-----END OPENSSH PRIVATE KEY-----\n",
    ),
    (
        "private-key",
        _EC_BODY[0],
        "@@ -3,4 +3,0 @@\n------BEGIN EC PRIVATE KEY-----\n-" + _EC_BODY[0] + "\n-" + _EC_BODY[1],
    ),
    (
        "private-key",
        _PGP_BODY[1],
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n"
        + "\n".join(_PGP_BODY)
        + "\n=Ab3x\n-----END PGP PRIVATE KEY BLOCK-----",
    ),
    # cloud providers
    ("aws-access-key-id", AWS_KEY_ID, "AWS_ACCESS_KEY_ID=" + AWS_KEY_ID),
    ("aws-secret-access-key", AWS_SECRET, "aws_secret_access_key = " + AWS_SECRET),
    ("aws-secret-access-key", AWS_SECRET, '  "SecretAccessKey": "' + AWS_SECRET + '",'),
    ("gcp-api-key", GCP_API_KEY, 'const firebaseConfig = { apiKey: "' + GCP_API_KEY + '" };'),
    ("gcp-oauth-client-secret", GCP_CLIENT_SECRET, '"client_secret": "' + GCP_CLIENT_SECRET + '",'),
    ("google-oauth-access-token", GOOGLE_ACCESS, 'curl -H "Authorization: Bearer ' + GOOGLE_ACCESS + '" https://x'),
    ("azure-account-key", AZURE_ACCOUNT_KEY,
     "DefaultEndpointsProtocol=https;AccountName=fakeacct;AccountKey=" + AZURE_ACCOUNT_KEY
     + ";EndpointSuffix=core.windows.net"),
    ("azure-sas-signature", AZURE_SAS_SIG,
     "https://fakeacct.blob.core.windows.net/c/f.txt?sv=2022-11-02&sp=r&se=2030-01-01&sig=" + AZURE_SAS_SIG),
    ("azure-ad-client-secret", AZURE_AD_SECRET, "AZURE_CLIENT_SECRET=" + AZURE_AD_SECRET),
    ("digitalocean-token", DIGITALOCEAN, 'do_token = "' + DIGITALOCEAN + '"'),
    ("databricks-token", DATABRICKS, "export DATABRICKS_TOKEN=" + DATABRICKS),
    ("terraform-cloud-token", TERRAFORM, 'credentials "app.terraform.io" { token = "' + TERRAFORM + '" }'),
    ("pulumi-token", PULUMI, "PULUMI_ACCESS_TOKEN=" + PULUMI),
    ("vault-token", VAULT, "VAULT_TOKEN=" + VAULT),
    ("doppler-token", DOPPLER, "doppler configure set token " + DOPPLER),
    ("planetscale-token", PLANETSCALE, "PLANETSCALE_SERVICE_TOKEN=" + PLANETSCALE),
    ("supabase-token", SUPABASE, "supabase login --token " + SUPABASE),
    # source hosting and package registries
    ("github-token", GH_TOKEN, "GITHUB_TOKEN=" + GH_TOKEN),
    ("github-token", GH_OAUTH, "git clone https://x-access-token:" + GH_OAUTH + "@github.com/o/r.git"),
    ("github-fine-grained-pat", GH_FINE, "gh auth login --with-token <<< " + GH_FINE),
    ("gitlab-token", GITLAB, 'headers = {"PRIVATE-TOKEN": "' + GITLAB + '"}'),
    ("bitbucket-app-password", BITBUCKET, "BITBUCKET_APP_PASSWORD=" + BITBUCKET),
    ("atlassian-api-token", ATLASSIAN, "jira.token=" + ATLASSIAN),
    ("npm-token", NPM, "//registry.npmjs.org/:_authToken=" + NPM),
    ("pypi-token", PYPI, "password = " + PYPI),
    ("rubygems-api-key", RUBYGEMS, ":rubygems_api_key: " + RUBYGEMS),
    ("dockerhub-pat", DOCKERHUB, "echo " + DOCKERHUB + " | docker login -u bot --password-stdin"),
    ("huggingface-token", HUGGINGFACE, "HF_TOKEN=" + HUGGINGFACE),
    # SaaS APIs
    ("slack-token", SLACK_BOT, 'SLACK_BOT_TOKEN="' + SLACK_BOT + '"'),
    ("slack-webhook-url", SLACK_HOOK_PATH, "webhook: https://hooks.slack.com/services/" + SLACK_HOOK_PATH),
    ("discord-webhook-url", DISCORD_HOOK,
     "requests.post('https://discord.com/api/webhooks/112233445566778899/" + DISCORD_HOOK + "', json=m)"),
    ("discord-bot-token", DISCORD_BOT, 'client.run("' + DISCORD_BOT + '")'),
    ("telegram-bot-token", TELEGRAM, "bot = telebot.TeleBot('" + TELEGRAM + "')"),
    ("stripe-secret-key", STRIPE_LIVE, 'stripe.api_key = "' + STRIPE_LIVE + '"'),
    ("stripe-secret-key", STRIPE_RESTRICTED, "STRIPE_KEY=" + STRIPE_RESTRICTED),
    ("stripe-webhook-secret", STRIPE_WHSEC, "endpoint_secret = '" + STRIPE_WHSEC + "'"),
    ("anthropic-api-key", ANTHROPIC, "ANTHROPIC_API_KEY=" + ANTHROPIC),
    ("openai-api-key", OPENAI, 'client = OpenAI(api_key="' + OPENAI + '")'),
    ("groq-api-key", GROQ, "GROQ_API_KEY=" + GROQ),
    ("replicate-api-token", REPLICATE, "REPLICATE_API_TOKEN=" + REPLICATE),
    ("twilio-api-key", TWILIO_SK, "client = Client('" + TWILIO_SK + "', api_secret, account_sid)"),
    ("twilio-account-sid", TWILIO_SID, "TWILIO_ACCOUNT_SID=" + TWILIO_SID),
    ("sendgrid-api-key", SENDGRID, "sg = SendGridAPIClient('" + SENDGRID + "')"),
    ("mailgun-api-key", MAILGUN, "MAILGUN_API_KEY=" + MAILGUN),
    ("mailchimp-api-key", MAILCHIMP, "mailchimp.set_config({'api_key': '" + MAILCHIMP + "'})"),
    ("shopify-token", SHOPIFY, "X-Shopify-Access-Token: " + SHOPIFY),
    ("square-token", SQUARE, "SQUARE_ACCESS_TOKEN=" + SQUARE),
    ("square-token", SQUARE_EAAA, "square.access_token: " + SQUARE_EAAA),
    ("grafana-token", GRAFANA, "GRAFANA_SA_TOKEN=" + GRAFANA),
    ("newrelic-key", NEWRELIC, "NEW_RELIC_API_KEY=" + NEWRELIC),
    ("linear-api-key", LINEAR, "LINEAR_API_KEY=" + LINEAR),
    ("notion-token", NOTION, "notion = Client(auth='" + NOTION + "')"),
    ("postman-api-key", POSTMAN, "postman_api_key: " + POSTMAN),
    ("sentry-token", SENTRY, "SENTRY_AUTH_TOKEN=" + SENTRY),
    ("age-secret-key", AGE, "# created: 2024-01-01\n# public key: age1fake\n" + AGE),
    ("jwt", JWT, "const session = '" + JWT + "';"),
    ("docker-config-auth", DOCKER_AUTH,
     '{"auths": {"https://index.docker.io/v1/": {"auth": "' + DOCKER_AUTH + '"}}}'),
    # headers, URLs and command lines
    ("authorization-header", BASIC_AUTH, "Authorization: Basic " + BASIC_AUTH),
    ("bearer-token", BEARER, "Send it as: Bearer " + BEARER),
    ("url-password", URL_PASSWORD, "DATABASE_URL=postgres://app_user:" + URL_PASSWORD + "@db.internal:5432/app"),
    ("url-password", URL_PASSWORD, "redis://:" + URL_PASSWORD + "@localhost:6379/0"),
    ("netrc-password", NETRC_PASSWORD, "machine api.example.com login deploy password " + NETRC_PASSWORD),
    ("sql-password", SQL_PASSWORD, "CREATE USER app IDENTIFIED BY '" + SQL_PASSWORD + "';"),
    ("sql-password", SQL_PASSWORD, "ALTER ROLE app WITH PASSWORD '" + SQL_PASSWORD + "';"),
    ("cli-secret-flag", CLI_PASSWORD, "pg_dumpall --host db --password " + CLI_PASSWORD),
    ("cli-secret-flag", CLI_PASSWORD, "keytool -list -keystore app.jks -storepass " + CLI_PASSWORD),
    ("cli-user-password", CURL_PASSWORD, "curl -u admin:" + CURL_PASSWORD + " https://api.example.com/v1"),
    ("mysql-cli-password", MYSQL_PASSWORD, "mysql -h db -u root -p" + MYSQL_PASSWORD + " app < dump.sql"),
    ("xml-secret-element", XML_PASSWORD, "    <password>" + XML_PASSWORD + "</password>"),
    # generic assignments in code and config
    ("password-assignment", PW_ENV, "DB_PASS=" + PW_ENV),
    ("password-assignment", PW_PY, 'password = "' + PW_PY + '"'),
    ("password-assignment", PW_YAML, "  PASSWORD: " + PW_YAML),
    ("password-assignment", PW_JSON, '{"user": "app", "password": "' + PW_JSON + '"}'),
    ("password-assignment", PW_PHRASE, "passphrase: '" + PW_PHRASE + "'"),
    ("password-assignment", PW_ENV, "Server=tcp:db.example.net;User ID=sa;Password=" + PW_ENV + ";Encrypt=True"),
    ("secret-assignment", SECRET_VAL, 'client_secret: "' + SECRET_VAL + '"'),
    ("secret-assignment", DJANGO_SECRET, "SECRET_KEY = '" + DJANGO_SECRET + "'"),
    ("token-assignment", TOKEN_VAL, '{"access_token": "' + TOKEN_VAL + '", "expires_in": 3600}'),
    ("token-assignment", QUERY_TOKEN, "GET /callback?state=1&access_token=" + QUERY_TOKEN + "&scope=x"),
    ("api-key-assignment", API_KEY_VAL, "X-API-Key: " + API_KEY_VAL),
    ("api-key-assignment", API_KEY_JSON, '"api_key": "' + API_KEY_JSON + '"'),
]

KINDS: frozenset[str] = frozenset(kind for kind, _, _ in CORPUS)

# Recognised with no surrounding context, and legal in a file name. In a name,
# put a non-alphanumeric character (/ _ - . or the end) on both sides: like a
# scanner, redact() looks for whole tokens, not for pieces of longer words.
FILENAME_SAFE: list[str] = [
    AWS_KEY_ID,
    GH_TOKEN,
    GH_FINE,
    GITLAB,
    SLACK_BOT,
    STRIPE_LIVE,
    ANTHROPIC,
    OPENAI,
    NPM,
    HUGGINGFACE,
    SENDGRID,
    GCP_API_KEY,
    DIGITALOCEAN,
    DATABRICKS,
    NEWRELIC,
    LINEAR,
    PULUMI,
    POSTMAN,
    TWILIO_SK,
    AGE,
    JWT,
]
