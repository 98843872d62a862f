"""oauth_providers.py: provider defaults, the endpoints a mailbox uses, and the rules its OAuth2
fields follow (pure functions, table-driven)."""
import json
from types import SimpleNamespace

import pytest

from portal.imap.oauth_providers import (
    AUTHORIZATION_CODE, CLIENT_CREDENTIALS, MAX_SERVICE_ACCOUNT_BYTES, PROVIDERS, SERVICE_ACCOUNT, endpoints,
    needs_person, oauth_problems, service_account_problem, url_problem, with_provider_defaults,
)

PEM = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
MS_TOKEN = "https://login.microsoftonline.com/{}/oauth2/v2.0/token"
MS_AUTHORIZE = "https://login.microsoftonline.com/{}/oauth2/v2.0/authorize"


# ----------------------------------------------------------------------------- with_provider_defaults

@pytest.mark.parametrize("payload, expected", [
    ({"auth_method": "oauth2", "oauth_provider": "microsoft"},
     {"auth_method": "oauth2", "oauth_provider": "microsoft", "host": "outlook.office365.com", "port": 993,
      "security": "ssl"}),
    ({"auth_method": "oauth2", "oauth_provider": "google"},
     {"auth_method": "oauth2", "oauth_provider": "google", "host": "imap.gmail.com", "port": 993, "security": "ssl"}),
    # what the payload names wins, one field at a time
    ({"auth_method": "oauth2", "oauth_provider": "microsoft", "host": "imap.example.com"},
     {"auth_method": "oauth2", "oauth_provider": "microsoft", "host": "imap.example.com", "port": 993,
      "security": "ssl"}),
    ({"auth_method": "oauth2", "oauth_provider": "google", "port": 1993, "security": "starttls"},
     {"auth_method": "oauth2", "oauth_provider": "google", "host": "imap.gmail.com", "port": 1993,
      "security": "starttls"}),
    ({"auth_method": "oauth2", "oauth_provider": "google", "host": None, "port": None, "security": None},
     {"auth_method": "oauth2", "oauth_provider": "google", "host": None, "port": None, "security": None}),
], ids=["microsoft", "google", "host-given", "port-security-given", "explicit-nulls-kept"])
def test_with_provider_defaults_fills_only_missing_server_fields(payload, expected):
    original = dict(payload)
    assert with_provider_defaults(payload) == expected
    assert payload == original  # not modified in place


@pytest.mark.parametrize("payload", [
    {"auth_method": "oauth2", "oauth_provider": "custom"},
    {"auth_method": "oauth2", "oauth_provider": "custom", "host": "imap.example.com"},
    {"auth_method": "password", "oauth_provider": "microsoft"},
    {"oauth_provider": "google"},  # no auth_method: password
    {"auth_method": "oauth2"},
    {"auth_method": "oauth2", "oauth_provider": "yahoo"},
    {"auth_method": "oauth2", "oauth_provider": ["microsoft"]},
    {"auth_method": "oauth2", "oauth_provider": None},
    {},
], ids=["custom", "custom-host", "password", "no-auth-method", "no-provider", "unknown", "list", "null", "empty"])
def test_with_provider_defaults_leaves_other_payloads_unchanged(payload):
    original = json.loads(json.dumps(payload))
    assert with_provider_defaults(payload) == original


@pytest.mark.parametrize("payload", [None, [], ["auth_method", "oauth2"], "oauth2", 3, b"{}"])
def test_with_provider_defaults_returns_non_dicts_as_is(payload):
    assert with_provider_defaults(payload) is payload


# ----------------------------------------------------------------------------- endpoints

def _values(**fields):
    base = dict(oauth_provider=None, oauth_flow=None, oauth_tenant=None, oauth_authorize_url=None,
                oauth_token_url=None, oauth_scope=None, oauth_client_id=None)
    base.update(fields)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("fields, authorize, token", [
    ({"oauth_provider": "microsoft"}, MS_AUTHORIZE.format("organizations"), MS_TOKEN.format("organizations")),
    ({"oauth_provider": "microsoft", "oauth_tenant": "  "}, MS_AUTHORIZE.format("organizations"),
     MS_TOKEN.format("organizations")),
    ({"oauth_provider": "microsoft", "oauth_tenant": "contoso.onmicrosoft.com"},
     MS_AUTHORIZE.format("contoso.onmicrosoft.com"), MS_TOKEN.format("contoso.onmicrosoft.com")),
    ({"oauth_provider": "microsoft", "oauth_tenant": " 72f988bf-86f1-41af-91ab-2d7cd011db47 "},
     MS_AUTHORIZE.format("72f988bf-86f1-41af-91ab-2d7cd011db47"),
     MS_TOKEN.format("72f988bf-86f1-41af-91ab-2d7cd011db47")),
    ({"oauth_provider": "microsoft", "oauth_tenant": "contoso.com", "oauth_token_url": "https://proxy.test/t",
      "oauth_authorize_url": "https://proxy.test/a"}, "https://proxy.test/a", "https://proxy.test/t"),
    ({"oauth_provider": "google"}, "https://accounts.google.com/o/oauth2/v2/auth",
     "https://oauth2.googleapis.com/token"),
    ({"oauth_provider": "google", "oauth_token_url": "https://proxy.test/token"},
     "https://accounts.google.com/o/oauth2/v2/auth", "https://proxy.test/token"),
    ({"oauth_provider": "custom", "oauth_authorize_url": "https://idp.test/a", "oauth_token_url": "https://idp.test/t"},
     "https://idp.test/a", "https://idp.test/t"),
    ({"oauth_provider": "custom"}, None, None),
    ({}, None, None),  # no provider: custom
], ids=["ms-default-tenant", "ms-blank-tenant", "ms-domain", "ms-guid-stripped", "ms-overrides", "google",
        "google-token-override", "custom", "custom-empty", "none"])
def test_endpoint_urls(fields, authorize, token):
    ends = endpoints(_values(**fields))
    assert (ends.authorize_url, ends.token_url) == (authorize, token)


@pytest.mark.parametrize("provider, flow, scope", [
    ("microsoft", None, "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access openid email"),
    ("microsoft", AUTHORIZATION_CODE, "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access openid email"),
    ("microsoft", CLIENT_CREDENTIALS, "https://outlook.office365.com/.default"),
    ("google", AUTHORIZATION_CODE, "https://mail.google.com/ openid email"),
    ("google", SERVICE_ACCOUNT, "https://mail.google.com/"),
    ("custom", AUTHORIZATION_CODE, ""),
    ("custom", CLIENT_CREDENTIALS, ""),
])
def test_default_scope_per_flow(provider, flow, scope):
    ends = endpoints(_values(oauth_provider=provider, oauth_flow=flow))
    assert ends.scope == scope
    assert ends.flow == (flow or AUTHORIZATION_CODE)
    assert ends.provider is PROVIDERS[provider]


def test_scope_client_id_override_and_fingerprint():
    ends = endpoints(_values(oauth_provider="microsoft", oauth_scope="  custom.scope  ", oauth_client_id="app-1"))
    assert ends.scope == "custom.scope" and ends.client_id == "app-1"
    assert endpoints(_values(oauth_provider="microsoft", oauth_client_id="")).client_id is None
    blank_scope = endpoints(_values(oauth_provider="google", oauth_scope="   "))
    assert blank_scope.scope == "https://mail.google.com/ openid email"
    # the fingerprint follows what tokens are bound to
    other_tenant = endpoints(_values(oauth_provider="microsoft", oauth_scope="custom.scope", oauth_client_id="app-1",
                                     oauth_tenant="contoso.com"))
    assert ends.fingerprint() != other_tenant.fingerprint()
    same = endpoints(_values(oauth_provider="microsoft", oauth_scope="custom.scope", oauth_client_id="app-1"))
    assert ends.fingerprint() == same.fingerprint()


def test_unknown_provider_falls_back_to_custom():
    assert endpoints(_values(oauth_provider="yahoo")).provider is PROVIDERS["custom"]


# ----------------------------------------------------------------------------- url_problem

@pytest.mark.parametrize("url", [
    "https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
    "https://idp.example.com:8443/token?x=1",
    "http://127.0.0.1:8080/token",
    "http://127.0.0.5/token",
    "http://[::1]:9000/token",
    "http://localhost/token",
    "http://LOCALHOST:1234/token",
])
def test_url_problem_accepts(url):
    assert url_problem(url) is None


@pytest.mark.parametrize("url, message", [
    ("http://idp.example.com/token", "Must use https://"),
    ("http://10.0.0.1/token", "Must use https://"),
    ("http://localhost.example.com/token", "Must use https://"),
    ("ftp://idp.example.com/token", "Must be an https:// URL"),
    ("https:///token", "Must be an https:// URL"),
    ("idp.example.com/token", "Must be an https:// URL"),
    ("", "Must be an https:// URL"),
    ("not a url", "Must be an https:// URL"),
    ("javascript:alert(1)", "Must be an https:// URL"),
    ("https://user:pass@idp.example.com/token", "Must not carry credentials"),
    ("https://user@idp.example.com/token", "Must not carry credentials"),
    ("https://idp.example.com/token#frag", "Must not carry credentials or a #fragment"),
    ("https://idp.example.com/my token", "Must not contain spaces"),
    ("https://idp.example.com/token\t", "Must not contain spaces"),
    ("https://idp.example.com:99999/token", "Must be a valid URL"),
    ("https://idp.example.com:abc/token", "Must be a valid URL"),
    ("https://[::1/token", "Must be a valid URL"),
    # the origin of an authorize URL goes into the mailbox page's CSP: no directive separators
    ("https://idp.example.com;script-src*/authorize", "Must name a host of letters, digits"),
    ("https://idp,example.com/authorize", "Must name a host of letters, digits"),
])
def test_url_problem_refuses(url, message):
    problem = url_problem(url)
    assert problem is not None and problem.startswith(message), problem


# ----------------------------------------------------------------------------- service_account_problem

def _key(**fields):
    key = {"type": "service_account", "client_email": "sa@proj.iam.gserviceaccount.com", "private_key": PEM}
    key.update(fields)
    return json.dumps({k: v for k, v in key.items() if v is not ...})


@pytest.mark.parametrize("text, message", [
    (_key(), None),
    ("not json", "Must be the service account's JSON key file"),
    ("", "Must be the service account's JSON key file"),
    ("[1, 2]", "Must be the service account's JSON key file"),
    ('"a string"', "Must be the service account's JSON key file"),
    (_key(client_email=...), "The JSON key has no client_email"),
    (_key(client_email="  "), "The JSON key has no client_email"),
    (_key(client_email=5), "The JSON key has no client_email"),
    (_key(private_key=...), "The JSON key has no private_key"),
    (_key(private_key=""), "The JSON key has no private_key"),
    (_key(private_key="MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), "The JSON key's private_key is not a PEM private key"),
    (_key(padding="x" * MAX_SERVICE_ACCOUNT_BYTES), "Must be at most 16 KB"),
    (_key(padding="é" * (MAX_SERVICE_ACCOUNT_BYTES // 2)), "Must be at most 16 KB"),  # bytes, not characters
], ids=["good", "not-json", "empty", "list", "string", "no-email", "blank-email", "number-email", "no-key",
        "empty-key", "not-pem", "too-big", "too-big-utf8"])
def test_service_account_problem(text, message):
    assert service_account_problem(text) == message


def test_service_account_problem_never_quotes_the_key():
    secret = "-----BEGIN PRIVATE KEY-----" + "S3CR3T" * 3000
    for text in (_key(private_key=secret), _key(client_email=..., private_key=secret), "x" + secret):
        assert "S3CR3T" not in (service_account_problem(text) or "")


# ----------------------------------------------------------------------------- oauth_problems

def _problems(has_client_secret=False, has_service_account=False, **values):
    values.setdefault("auth_method", "oauth2")
    return oauth_problems(values, has_client_secret=has_client_secret, has_service_account=has_service_account)


CUSTOM = {"oauth_provider": "custom", "oauth_token_url": "https://idp.test/t", "oauth_authorize_url": "https://idp.test/a"}


@pytest.mark.parametrize("values, flags", [
    ({"oauth_provider": "microsoft", "oauth_client_id": "app"}, {}),
    ({"oauth_provider": "microsoft", "oauth_client_id": "app", "oauth_tenant": "organizations"}, {}),
    ({"oauth_provider": "microsoft", "oauth_client_id": "app", "oauth_tenant": "contoso.onmicrosoft.com",
      "oauth_flow": CLIENT_CREDENTIALS}, {"has_client_secret": True}),
    ({"oauth_provider": "microsoft", "oauth_client_id": "app", "oauth_tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
      "oauth_flow": CLIENT_CREDENTIALS}, {"has_client_secret": True}),
    ({"oauth_provider": "google", "oauth_client_id": "app", "oauth_flow": AUTHORIZATION_CODE}, {}),
    ({"oauth_provider": "google", "oauth_flow": SERVICE_ACCOUNT}, {"has_service_account": True}),
    ({**CUSTOM, "oauth_client_id": "app"}, {}),
    ({**CUSTOM, "oauth_authorize_url": None, "oauth_client_id": "app", "oauth_flow": CLIENT_CREDENTIALS},
     {"has_client_secret": True}),
    ({**CUSTOM, "oauth_authorize_url": None, "oauth_flow": SERVICE_ACCOUNT}, {"has_service_account": True}),
], ids=["ms-code", "ms-code-organizations", "ms-app-domain", "ms-app-guid", "google-code", "google-sa",
        "custom-code", "custom-app", "custom-sa"])
def test_oauth_problems_none_for_good_settings(values, flags):
    assert _problems(**flags, **values) == {}


@pytest.mark.parametrize("values", [
    {"auth_method": "password", "oauth_provider": "yahoo", "oauth_tenant": "a/b"},
    {"auth_method": None},
    {},
])
def test_oauth_problems_empty_without_oauth2(values):
    assert oauth_problems(values, has_client_secret=False, has_service_account=False) == {}


@pytest.mark.parametrize("values, flags, field, message", [
    # provider
    ({"oauth_provider": "yahoo", "oauth_client_id": "app"}, {}, "oauth_provider",
     "Choose microsoft, google or custom for OAuth2 sign-in"),
    ({"oauth_provider": None}, {}, "oauth_provider", "Choose microsoft, google or custom for OAuth2 sign-in"),
    ({"oauth_provider": ""}, {}, "oauth_provider", "Choose microsoft, google or custom for OAuth2 sign-in"),
    # flow not offered by the provider
    ({"oauth_provider": "microsoft", "oauth_client_id": "app", "oauth_flow": SERVICE_ACCOUNT},
     {"has_service_account": True}, "oauth_flow", "microsoft supports: authorization_code, client_credentials"),
    ({"oauth_provider": "google", "oauth_client_id": "app", "oauth_flow": CLIENT_CREDENTIALS},
     {"has_client_secret": True}, "oauth_flow", "google supports: authorization_code, service_account"),
    ({**CUSTOM, "oauth_client_id": "app", "oauth_flow": "implicit"}, {}, "oauth_flow",
     "custom supports: authorization_code, client_credentials, service_account"),
    # custom endpoints
    ({**CUSTOM, "oauth_client_id": "app", "oauth_token_url": None}, {}, "oauth_token_url",
     "Required for a custom provider"),
    ({**CUSTOM, "oauth_client_id": "app", "oauth_token_url": ""}, {}, "oauth_token_url",
     "Required for a custom provider"),
    ({**CUSTOM, "oauth_client_id": "app", "oauth_authorize_url": None}, {}, "oauth_authorize_url",
     "Required for a custom provider's authorization code flow"),
    ({**CUSTOM, "oauth_client_id": "app", "oauth_authorize_url": "", "oauth_flow": AUTHORIZATION_CODE}, {},
     "oauth_authorize_url", "Required for a custom provider's authorization code flow"),
    # tenant
    ({"oauth_provider": "google", "oauth_client_id": "app", "oauth_tenant": "contoso.com"}, {}, "oauth_tenant",
     "Only used with microsoft"),
    ({**CUSTOM, "oauth_client_id": "app", "oauth_tenant": "contoso.com"}, {}, "oauth_tenant",
     "Only used with microsoft"),
    *[({"oauth_provider": "microsoft", "oauth_client_id": "app", "oauth_tenant": tenant}, {}, "oauth_tenant",
       "Must be a tenant ID (GUID), a domain, or organizations/common")
      for tenant in ("a/b", "../x", "..", "contoso.com/", "-contoso", "contoso.", "a b", "x?y", "x#y", "x%2fy",
                     "a" * 201)],
    # app-only on microsoft needs a real tenant
    *[({"oauth_provider": "microsoft", "oauth_client_id": "app", "oauth_flow": CLIENT_CREDENTIALS,
        **({"oauth_tenant": tenant} if tenant is not None else {})}, {"has_client_secret": True}, "oauth_tenant",
       "App-only access needs your tenant ID or primary domain")
      for tenant in (None, "", "organizations", "common", "consumers", "Organizations", "COMMON")],
    # client id
    ({"oauth_provider": "microsoft"}, {}, "oauth_client_id", "Required for OAuth2 sign-in"),
    ({"oauth_provider": "google", "oauth_client_id": ""}, {}, "oauth_client_id", "Required for OAuth2 sign-in"),
    ({**CUSTOM, "oauth_flow": CLIENT_CREDENTIALS}, {"has_client_secret": True}, "oauth_client_id",
     "Required for OAuth2 sign-in"),
    # client secret
    ({**CUSTOM, "oauth_client_id": "app", "oauth_flow": CLIENT_CREDENTIALS}, {}, "oauth_client_secret",
     "Required for the client credentials flow"),
    ({"oauth_provider": "microsoft", "oauth_client_id": "app", "oauth_flow": CLIENT_CREDENTIALS,
      "oauth_tenant": "contoso.com"}, {"has_service_account": True}, "oauth_client_secret",
     "Required for the client credentials flow"),
    # service account key
    ({"oauth_provider": "google", "oauth_flow": SERVICE_ACCOUNT}, {}, "oauth_service_account_json",
     "Required for the service account flow"),
    ({**CUSTOM, "oauth_flow": SERVICE_ACCOUNT}, {"has_client_secret": True}, "oauth_service_account_json",
     "Required for the service account flow"),
])
def test_oauth_problems_rule(values, flags, field, message):
    problems = _problems(**flags, **values)
    assert message in problems.get(field, []), problems


@pytest.mark.parametrize("values, flags", [
    # a client id is not needed for a service account, and a secret only for client credentials
    ({"oauth_provider": "google", "oauth_flow": SERVICE_ACCOUNT}, {"has_service_account": True}),
    ({"oauth_provider": "google", "oauth_client_id": "app"}, {}),
    ({"oauth_provider": "microsoft", "oauth_client_id": "app", "oauth_tenant": "common"}, {}),
])
def test_oauth_problems_only_where_needed(values, flags):
    problems = _problems(**flags, **values)
    assert "oauth_client_id" not in problems and "oauth_client_secret" not in problems
    assert "oauth_tenant" not in problems


def test_oauth_problems_reports_every_field_at_once():
    problems = _problems(oauth_provider="custom", oauth_flow=CLIENT_CREDENTIALS, oauth_tenant="../x")
    assert set(problems) == {"oauth_token_url", "oauth_tenant", "oauth_client_id", "oauth_client_secret"}
    # an unknown provider stops there: nothing else can be judged
    assert set(_problems(oauth_provider="nope", oauth_tenant="../x")) == {"oauth_provider"}


# ----------------------------------------------------------------------------- needs_person

@pytest.mark.parametrize("code, expected", [
    ("invalid_grant", True), ("invalid_client", True), ("unauthorized_client", True), ("access_denied", True),
    ("consent_required", True), ("interaction_required", True), ("invalid_scope", True),
    ("temporarily_unavailable", False), ("server_error", False), ("invalid_request", False),
    ("slow_down", False), ("INVALID_GRANT", False), ("", False), (None, False),
])
def test_needs_person(code, expected):
    assert needs_person(code) is expected
