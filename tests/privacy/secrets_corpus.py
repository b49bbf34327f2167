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

``PLANTED`` adds the classes of issue 9 in many spellings (credentials in prose,
env-style names with any prefix in shell/YAML/TOML/JSON/.env, bare vendor tokens,
private-key bodies whose BEGIN line is elsewhere). ``CUT_HEADERS`` are function
lines longer than the 80 bytes git prints of a hunk header's context, cut in the
middle of their secret. ``NOTES`` are notes a person might ``lmm remember``.
"""

from __future__ import annotations

import base64
import json
import random

__all__ = ["CORPUS", "FILENAME_SAFE", "KINDS", "PLANTED", "CUT_HEADERS", "NOTES", "ALL_VALUES"]

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


# =============================================================================
# Issue 9: the prefix table of gitleaks / detect-secrets, prose, env-style names
# =============================================================================

LHEX = HEX
LALNUM = LO + DIG
ONEPASSWORD_KEY = "A" + "3-" + "-".join([_r(UP + DIG, 6), _r(UP + DIG, 11), _r(UP + DIG, 5), _r(UP + DIG, 5), _r(UP + DIG, 5)])
ONEPASSWORD_SA = "op" + "s_" + "eyJ" + _r(B64, 260)
ADOBE = "p8" + "e-" + _r(ALNUM, 32)
ALIBABA = "LT" + "AI" + _r(ALNUM, 20)
ARTIFACTORY = "AK" + "Cp" + _r(ALNUM, 69)
AUTHRESS = "sc" + "_" + _r(ALNUM, 10) + "." + _r(ALNUM, 5) + ".ac" + "c_" + _r(ALNUM, 20) + "." + _r(URLSAFE, 40)
CLICKHOUSE = "4b" + "1d" + _r(ALNUM, 38)
CLOJARS = "CLOJ" + "ARS_" + _r(LALNUM, 60)
CF_ORIGIN = "v1" + ".0-" + _r(LHEX, 24) + "-" + _r(LHEX, 146)
DUFFEL = "duf" + "fel_test_" + _r(ALNUM, 43)
DYNATRACE = "dt0" + "c01." + _r(UP + DIG, 24) + "." + _r(ALNUM, 64)
EASYPOST = "EZ" + "AK" + _r(ALNUM, 54)
FACEBOOK = "EA" + "AC" + _r(ALNUM, 120)
FLUTTERWAVE = "FLW" + "SECK_TEST-" + _r(LHEX, 32) + "-X"
FLYIO = "fm" + "2_" + _r(B64, 120)
FRAMEIO = "fio" + "-u-" + _r(URLSAFE, 64)
GL_RUNNER = "GR13" + "48941" + _r(URLSAFE, 20)
GL_SESSION = _r(LALNUM, 32)
GRAFANA_KEY = "eyJr" + "Ijoi" + _r(ALNUM, 80)
HARNESS = "pa" + "t." + _r(URLSAFE, 22) + "." + _r(ALNUM, 24) + "." + _r(ALNUM, 20)
HEROKU = "HR" + "KU-AA" + _r(URLSAFE, 58)
HF_ORG = "api" + "_org_" + _r(UP + LO, 34)
INFRACOST = "ic" + "o-" + _r(ALNUM, 32)
INTRA42 = "s-s4" + "t2ud-" + _r(LHEX, 64)
JWT_B64 = base64.b64encode(JWT.encode()).decode()
MAXMIND = _r(ALNUM, 6) + "_" + _r(ALNUM, 29) + "_m" + "mk"
TEAMS_PATH = "-".join([_r(LHEX, 8), _r(LHEX, 4), _r(LHEX, 4), _r(LHEX, 4), _r(LHEX, 12)]) + "@" + "-".join(
    [_r(LHEX, 8), _r(LHEX, 4), _r(LHEX, 4), _r(LHEX, 4), _r(LHEX, 12)]) + "/IncomingWebhook/" + _r(LHEX, 32)
OCTOPUS = "AP" + "I-" + _r(UP, 10) + _r(DIG, 6) + _r(UP + DIG, 10)
OPENROUTER = "sk" + "-or-v1-" + _r(LHEX, 64)
OPENSHIFT = "sha" + "256~" + _r(URLSAFE, 43)
PERPLEXITY = "pp" + "lx-" + _r(ALNUM, 48)
PREFECT = "pn" + "u_" + _r(ALNUM, 36)
README_TOKEN = "rd" + "me_" + _r(LALNUM, 70)
SCALINGO = "tk" + "-us-" + _r(URLSAFE, 48)
SENDINBLUE = "xkey" + "sib-" + _r(LHEX, 64) + "-" + _r(ALNUM, 16)
SETTLEMINT = "sm" + "_pat_" + _r(ALNUM, 16)
SHIPPO = "ship" + "po_live_" + _r(LHEX, 40)
SOURCEGRAPH = "sg" + "p_local_" + _r(LHEX, 40)
TYPEFORM = "tf" + "p_" + _r(ALNUM, 59)
XAI = "xa" + "i-" + _r(ALNUM, 80)
LANGSMITH = "lsv" + "2_pt_" + _r(LHEX, 32) + "_" + _r(LHEX, 10)
PINECONE = "pc" + "sk_" + _r(ALNUM, 60)
TAILSCALE = "ts" + "key-auth-" + _r(ALNUM, 12) + "-" + _r(ALNUM, 30)
DENO = "dd" + "p_" + _r(ALNUM, 36)
NEON = "na" + "pi_" + _r(LALNUM, 64)
FIGMA = "fi" + "gd_" + _r(URLSAFE, 40)
NETLIFY = "nf" + "p_" + _r(ALNUM, 40)
GOOGLE_REFRESH = "1/" + "/0" + _r(URLSAFE, 60)
AWS_SESSION = "IQoJ" + "b3JpZ2lu" + _r(B64, 200)
FCM = "AA" + "AA" + _r(URLSAFE, 7) + ":APA" + "91b" + _r(URLSAFE, 134)
BRAINTREE = "access_token" + "$production$" + _r(LALNUM, 16) + "$" + _r(LHEX, 32)
NUGET = "oy" + "2" + _r(LALNUM, 43)
SONAR = "sq" + "p_" + _r(LHEX, 40)
CONTENTFUL = "CF" + "PAT-" + _r(URLSAFE, 43)
BUILDKITE = "bk" + "ua_" + _r(LHEX, 40)
CIRCLECI = "CCI" + "PAT_" + _r(ALNUM, 22) + "_" + _r(LHEX, 40)
DROPBOX = "s" + "l." + _r(URLSAFE, 140)
MAPBOX = "s" + "k.eyJ" + _r(URLSAFE, 40) + "." + _r(URLSAFE, 22)
AWS_A3T = "A3" + "TX" + _r(B32, 16)
STRIPE_PROD = "sk" + "_prod_" + _r(ALNUM, 24)

# context-dependent values of the new classes
PG_PASSWORD = "Pg" + _r(ALNUM, 12) + "!7"
OPENAI_STYLE_KEY = _r(ALNUM, 40)  # a key of unknown format under a *_KEY name
PROSE_PW = "Wint" + _r(ALNUM, 6) + "2024!"
PROSE_TOKEN = _r(ALNUM, 32)

_KEY_TAIL_BODY = [_r(B64, 64) for _ in range(6)] + [_r(B64, 20) + "=="]

CORPUS += [
    ("onepassword-token", ONEPASSWORD_KEY, "op signin --secret-key " + ONEPASSWORD_KEY),
    ("onepassword-token", ONEPASSWORD_SA, "OP_SERVICE_ACCOUNT=" + ONEPASSWORD_SA),
    ("adobe-client-secret", ADOBE, "adobe.clientSecret(" + repr(ADOBE) + ")"),
    ("alibaba-access-key-id", ALIBABA, "aliyun configure --access-key-id " + ALIBABA),
    ("artifactory-token", ARTIFACTORY, "jf c add --access-token " + ARTIFACTORY),
    ("authress-key", AUTHRESS, "authress = AuthressClient(" + repr(AUTHRESS) + ")"),
    ("clickhouse-api-secret", CLICKHOUSE, "ch.connect(secret=" + repr(CLICKHOUSE) + ")"),
    ("clojars-token", CLOJARS, "lein deploy clojars " + CLOJARS),
    ("cloudflare-origin-ca-key", CF_ORIGIN, "origin_ca_key: " + CF_ORIGIN),
    ("duffel-token", DUFFEL, "Duffel(" + repr(DUFFEL) + ")"),
    ("dynatrace-token", DYNATRACE, "curl -H 'Api-Token " + DYNATRACE + "' https://x"),
    ("easypost-token", EASYPOST, "easypost.api_key(" + repr(EASYPOST) + ")"),
    ("facebook-access-token", FACEBOOK, "graph = GraphAPI(" + repr(FACEBOOK) + ")"),
    ("flutterwave-key", FLUTTERWAVE, "Rave(" + repr(FLUTTERWAVE) + ")"),
    ("flyio-token", FLYIO, "fly deploy --access-token " + FLYIO),
    ("frameio-token", FRAMEIO, "frameio.Client(" + repr(FRAMEIO) + ")"),
    ("gitlab-runner-registration-token", GL_RUNNER, "gitlab-runner register --registration-token " + GL_RUNNER),
    ("gitlab-session-cookie", GL_SESSION, "Cookie: _gitlab" + "_session=" + GL_SESSION),
    ("grafana-api-key", GRAFANA_KEY, "grafana(" + repr(GRAFANA_KEY) + ")"),
    ("harness-token", HARNESS, "harness login " + HARNESS),
    ("heroku-api-key", HEROKU, "heroku.from_key(" + repr(HEROKU) + ")"),
    ("huggingface-org-token", HF_ORG, "hub.login(" + repr(HF_ORG) + ")"),
    ("infracost-token", INFRACOST, "infracost configure set api_key " + INFRACOST),
    ("intra42-secret", INTRA42, "client42(" + repr(INTRA42) + ")"),
    ("jwt-base64", JWT_B64, "  session: " + JWT_B64),
    ("maxmind-license-key", MAXMIND, "geoipupdate -k " + MAXMIND),
    ("teams-webhook-url", TEAMS_PATH, "post('https://acme.webhook.office.com/webhookb2/" + TEAMS_PATH + "')"),
    ("octopus-deploy-key", OCTOPUS, "octo push --apiKey " + OCTOPUS),
    ("openrouter-api-key", OPENROUTER, "OpenAI(base_url=u, api_key=" + repr(OPENROUTER) + ")"),
    ("openshift-token", OPENSHIFT, "oc login --token=" + OPENSHIFT),
    ("perplexity-api-key", PERPLEXITY, "pplx(" + repr(PERPLEXITY) + ")"),
    ("prefect-token", PREFECT, "prefect cloud login -k " + PREFECT),
    ("readme-token", README_TOKEN, "rdme login " + README_TOKEN),
    ("scalingo-token", SCALINGO, "scalingo login --api-token " + SCALINGO),
    ("sendinblue-key", SENDINBLUE, "brevo(" + repr(SENDINBLUE) + ")"),
    ("shippo-token", SHIPPO, "shippo.config.api_key(" + repr(SHIPPO) + ")"),
    ("sourcegraph-token", SOURCEGRAPH, "src login " + SOURCEGRAPH),
    ("typeform-token", TYPEFORM, "Typeform(" + repr(TYPEFORM) + ")"),
    ("xai-api-key", XAI, "Client(" + repr(XAI) + ")"),
    ("langsmith-api-key", LANGSMITH, "Client(" + repr(LANGSMITH) + ")"),
    ("pinecone-api-key", PINECONE, "Pinecone(" + repr(PINECONE) + ")"),
    ("tailscale-key", TAILSCALE, "tailscale up --authkey " + TAILSCALE),
    ("deno-token", DENO, "deployctl deploy --token " + DENO),
    ("neon-api-key", NEON, "neonctl auth " + NEON),
    ("figma-token", FIGMA, "figma(" + repr(FIGMA) + ")"),
    ("netlify-token", NETLIFY, "netlify deploy --auth " + NETLIFY),
    ("google-oauth-refresh-token", GOOGLE_REFRESH, "creds.refresh(" + repr(GOOGLE_REFRESH) + ")"),
    ("aws-session-token", AWS_SESSION, "aws_session_token = " + AWS_SESSION),
    ("fcm-server-key", FCM, "fcm = FCMNotification(" + repr(FCM) + ")"),
    ("braintree-token", BRAINTREE, "gateway = braintree.BraintreeGateway(access_token=" + repr(BRAINTREE) + ")"),
    ("nuget-api-key", NUGET, "dotnet nuget push pkg.nupkg -k " + NUGET),
    ("sonarqube-token", SONAR, "sonar-scanner -Dsonar.login=" + SONAR),
    ("contentful-token", CONTENTFUL, "contentful login --management-token " + CONTENTFUL),
    ("buildkite-token", BUILDKITE, "bk configure " + BUILDKITE),
    ("circleci-token", CIRCLECI, "circleci setup " + CIRCLECI),
    ("mapbox-secret-token", MAPBOX, "mapbox upload " + MAPBOX),
    ("aws-access-key-id", AWS_A3T, "aws configure set aws_access_key_id " + AWS_A3T),
    ("stripe-secret-key", STRIPE_PROD, "stripe.api_key = " + repr(STRIPE_PROD)),
    ("private-key-body", _KEY_TAIL_BODY[3],
     "@@ -20,9 +20,10 @@ def load():\n" + "".join(" " + b + "\n" for b in _KEY_TAIL_BODY)
     + " -----END RSA PRIVATE KEY-----\n+appended = True\n"),
    ("env-secret-assignment", PG_PASSWORD, "export PGPASSWORD=" + PG_PASSWORD),
    ("key-assignment", OPENAI_STYLE_KEY, "OPENAI_KEY=" + OPENAI_STYLE_KEY),
    ("prose-secret", PROSE_PW, "the staging db password is " + PROSE_PW + " until Friday"),
    ("prose-secret", PROSE_TOKEN, "rotated: auth token " + PROSE_TOKEN + " expires soon"),
]
KINDS = frozenset(kind for kind, _, _ in CORPUS)

FILENAME_SAFE += [
    ADOBE, ALIBABA, CLICKHOUSE, CLOJARS, EASYPOST, FLUTTERWAVE, GL_RUNNER, HEROKU, HF_ORG, INFRACOST,
    MAXMIND, OPENROUTER, PERPLEXITY, PREFECT, README_TOKEN, SCALINGO, SENDINBLUE, SHIPPO, SOURCEGRAPH,
    XAI, LANGSMITH, PINECONE, TAILSCALE, DENO, NEON, FIGMA, NETLIFY, NUGET, SONAR, CONTENTFUL, BUILDKITE,
    CIRCLECI, GROQ, REPLICATE, SHOPIFY, SQUARE, SENTRY, SUPABASE, PLANETSCALE,
]
# One value per rule: in a file name the marker replaces it, and two names with the same marker would be one.


# --- PLANTED: the classes of issue 9 in many spellings ----------------------


def _pw(tag: str) -> str:
    """A password-like value: letters, digits and a symbol, unique per use."""
    return tag + _r(ALNUM, 10) + _rng.choice("!#%*+") + _r(DIG, 2)


def _tok(n: int = 32) -> str:
    return _r(ALNUM, n)


_prose = [
    ("the admin password is {v}", _pw("Adm")),
    ("staging db password is {v} until Friday", _pw("Stg")),
    ("aws secret key: {v}", _r(ALNUM, 20) + "/" + _r(ALNUM, 19)),
    ("auth token {v}", _tok()),
    ("The new root password was changed to {v} after the incident.", _pw("Rt")),
    ("api key = {v} (rotate monthly)", _tok(36)),
    ("FYI the prod token is now {v}", _tok(40)),
    ("wifi password: {v} — ask IT before sharing", _pw("Wf")),
    ("reset the deploy key to {v}", _tok(28)),
    ("Use access token {v} for the bot", _tok(44)),
    ("bot token is '{v}'", _tok(30)),
    ('the password is "{v}"', "correct " + _r(LO, 6) + " battery " + _r(LO, 7)),
    ("vault passphrase: {v}", _pw("Vp")),
    ("client secret is {v}", _tok(34)),
    ("db_password is {v} on the replica", _pw("Rep")),
]
_env = [
    ("OPENAI_KEY={v}", _tok(48)),
    ("SENDGRID_KEY={v}", _tok(40)),
    ("export PGPASSWORD={v}", _pw("Pg")),
    ("DD_API_KEY={v}", _r(HEX, 32)),
    ("GITHUBTOKEN={v}", _tok(36)),
    ("MY_SERVICE_TOKEN={v}", _tok(30)),
    ("PAYMENTS_SECRET={v}", _tok(30)),
    ("REDIS_PASSWORD={v}", _pw("Rd")),
    ("MYSQL_PWD={v}", _pw("My")),
    ("  MAPS_KEY: {v}", _tok(39)),
    ('  "WEBHOOK_SECRET": "{v}",', _tok(32)),
    ('algolia_admin_key = "{v}"', _r(HEX, 32)),
    ("      - SMTP_PASSWORD={v}", _pw("Sm")),
    ("ENV SLACKTOKEN={v}", _tok(40)),
    ("DB_CREDENTIALS={v}", _pw("Cr")),
    ("stripeKey: '{v}',", _tok(32)),
    ("ADMIN_PASS ?= {v}", _pw("Mk")),
    ("set -x DEPLOY_TOKEN {v}", _tok(32)),
]

PLANTED: list[tuple[str, str, str]] = (
    [("prose", v, t.format(v=v)) for t, v in _prose]
    + [("env-style", v, t.format(v=v)) for t, v in _env]
    + [(kind, v, f"token {v}") for kind, v, _ in ((k, v, t) for k, v, t in CORPUS if v in FILENAME_SAFE)]
)

# Function lines longer than git's 80-byte hunk-header context, cut in the middle of the secret.
_pad = "def connect(host, port, user, database, timeout=30, "
CUT_HEADERS: list[tuple[str, str, str]] = [
    ("cut-github-token", GH_TOKEN, _pad + 'token="' + GH_TOKEN + '"):'),
    ("cut-stripe", STRIPE_LIVE, _pad + "k='" + STRIPE_LIVE + "'):"),
    ("cut-password", "Cut-" + _r(ALNUM, 30), _pad + 'password="Cut-' + "{v}" + '"):'),
    ("cut-passphrase", "correct horse " + _r(LO, 30), "def unlock(vault, retries=3, backoff=1.5, jitter=True, passphrase='{v}'):"),
    ("cut-env", _tok(40), "function deploy(region, env, SERVICE_TOKEN={v}) {"),
    ("cut-anthropic", ANTHROPIC, "async function callModel(prompt: string, key = '" + ANTHROPIC + "') {"),
]
CUT_HEADERS = [(k, v, line.replace("{v}", v.removeprefix("Cut-")) if "{v}" in line else line) for k, v, line in CUT_HEADERS]
for _k, _v, _line in CUT_HEADERS:
    _at = _line.find(_v)
    assert _at >= 0 and _at < 74 < _at + len(_v), (_k, _at)  # the cut at 80 bytes lands inside the value

# Notes a person might write; lmm remember redacts them in note mode.
NOTE_PW = "swordfish" + _r(LO, 4)
NOTES: list[tuple[str, str, str]] = [
    ("note-prose", NOTE_PW, "the staging admin password is " + NOTE_PW + ", rotate after the demo"),
    ("note-prose", PROSE_PW, "db password: " + PROSE_PW),
    ("note-token", GH_TOKEN, "CI uses " + GH_TOKEN + " for the mirror"),
    ("note-env", PG_PASSWORD, "run psql with PGPASSWORD=" + PG_PASSWORD),
    ("note-key", OPENAI_STYLE_KEY, "the openai key is " + OPENAI_STYLE_KEY),
]

ALL_VALUES: list[tuple[str, str]] = sorted(
    {(k, v) for k, v, _ in CORPUS} | {(k, v) for k, v, _ in PLANTED} | {(k, v) for k, v, _ in CUT_HEADERS}
    | {(k, v) for k, v, _ in NOTES}
)
