"""OAuth2 sign-in settings of a mailbox: provider defaults, the endpoints a mailbox uses, and the
rules its fields must follow. Pure: no Flask, no IO.

A mailbox names a provider (microsoft, google, custom) and a flow; the provider fills in what
the admin leaves empty (server, endpoints, scope). `endpoints()` is the one place that turns a
mailbox's fields into the URLs and scope its tokens come from.
"""
import ipaddress
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

PASSWORD, OAUTH2 = "password", "oauth2"
AUTH_METHODS = ((PASSWORD, "Password"), (OAUTH2, "OAuth2"))

AUTHORIZATION_CODE, CLIENT_CREDENTIALS, SERVICE_ACCOUNT = "authorization_code", "client_credentials", "service_account"
FLOWS = (
    (AUTHORIZATION_CODE, "Authorization code"),
    (CLIENT_CREDENTIALS, "Client credentials (app-only)"),
    (SERVICE_ACCOUNT, "Service account (Google)"),
)

NOT_CONNECTED, CONNECTED, NEEDS_REAUTHORIZATION, ERROR = "not_connected", "connected", "needs_reauthorization", "error"
STATUSES = (NOT_CONNECTED, CONNECTED, NEEDS_REAUTHORIZATION, ERROR)
STATUS_LABELS = {
    NOT_CONNECTED: "Not connected",
    CONNECTED: "Connected",
    NEEDS_REAUTHORIZATION: "Needs reauthorization",
    ERROR: "Sign-in error",
}

SIGN_IN_EXPIRED = "Sign-in expired or revoked: reconnect the mailbox"
CONNECT_FIRST = "Connect the mailbox first"

MICROSOFT_TENANT_DEFAULT = "organizations"
# A tenant is a GUID, a domain, or one of Microsoft's aliases; it is put into a URL path.
TENANT_PATTERN = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9.-]{0,198}[A-Za-z0-9])?\Z")
SHARED_TENANTS = ("organizations", "common", "consumers")
HOST_CHARACTERS = re.compile(r"[A-Za-z0-9.:-]{1,253}")
MAX_SERVICE_ACCOUNT_BYTES = 16 * 1024


@dataclass(frozen=True)
class Provider:
    name: str
    label: str  # "Connect with <label>"
    host: str | None
    authorize_url: str | None  # may hold {tenant}
    token_url: str | None
    scopes: dict  # flow -> default scope
    flows: tuple[str, ...]
    authorize_params: tuple[tuple[str, str], ...] = ()


PROVIDERS = {
    "microsoft": Provider(
        "microsoft", "Microsoft", "outlook.office365.com",
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        {
            AUTHORIZATION_CODE: "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access openid email",
            CLIENT_CREDENTIALS: "https://outlook.office365.com/.default",
        },
        (AUTHORIZATION_CODE, CLIENT_CREDENTIALS),
    ),
    "google": Provider(
        "google", "Google", "imap.gmail.com",
        "https://accounts.google.com/o/oauth2/v2/auth",
        "https://oauth2.googleapis.com/token",
        {AUTHORIZATION_CODE: "https://mail.google.com/ openid email", SERVICE_ACCOUNT: "https://mail.google.com/"},
        (AUTHORIZATION_CODE, SERVICE_ACCOUNT),
        # Google issues a refresh token only when asked for offline access, and again only with consent.
        (("access_type", "offline"), ("prompt", "consent")),
    ),
    "custom": Provider(
        "custom", "the provider", None, None, None, {}, (AUTHORIZATION_CODE, CLIENT_CREDENTIALS, SERVICE_ACCOUNT),
    ),
}
PROVIDER_CHOICES = (("microsoft", "Microsoft 365"), ("google", "Google Workspace"), ("custom", "Other (custom)"))

# What choosing microsoft or google fills in when the payload leaves it out.
SERVER_DEFAULTS = {"port": 993, "security": "ssl"}


def with_provider_defaults(payload):
    """The payload with the provider's server filled in where it names microsoft or google and
    leaves host, port or security out. Anything that is not a dict is returned as is."""
    if not isinstance(payload, dict) or payload.get("auth_method") != OAUTH2:
        return payload
    provider = PROVIDERS.get(payload.get("oauth_provider")) if isinstance(payload.get("oauth_provider"), str) else None
    if provider is None or provider.host is None:
        return payload
    filled = dict(payload)
    filled.setdefault("host", provider.host)
    for name, value in SERVER_DEFAULTS.items():
        filled.setdefault(name, value)
    return filled


@dataclass(frozen=True)
class Endpoints:
    """Where a mailbox's tokens come from."""

    provider: Provider
    flow: str
    authorize_url: str | None
    token_url: str | None
    scope: str
    client_id: str | None

    def fingerprint(self) -> str:
        """What a stored client secret and stored tokens are bound to (see secrets_follow)."""
        return json.dumps([self.provider.name, self.flow, self.token_url, self.client_id, self.scope])


def endpoints(values) -> Endpoints:
    """The endpoints of a mailbox (or anything with its oauth_* attributes)."""
    provider = PROVIDERS.get(values.oauth_provider or "custom", PROVIDERS["custom"])
    flow = values.oauth_flow or AUTHORIZATION_CODE
    tenant = (values.oauth_tenant or "").strip() or MICROSOFT_TENANT_DEFAULT
    authorize = values.oauth_authorize_url or _fill(provider.authorize_url, tenant)
    token = values.oauth_token_url or _fill(provider.token_url, tenant)
    scope = (values.oauth_scope or "").strip() or provider.scopes.get(flow, "")
    return Endpoints(provider, flow, authorize, token, scope, values.oauth_client_id or None)


def _fill(template: str | None, tenant: str) -> str | None:
    return template.format(tenant=tenant) if template else None


# ----------------------------------------------------------------------------- validation


def url_problem(url: str) -> str | None:
    """Why `url` cannot be an OAuth2 endpoint: https only (http for a loopback host), no
    credentials or fragment in it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "Must be a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "Must be an https:// URL"
    if not HOST_CHARACTERS.fullmatch(parts.hostname):  # the origin also goes into a page's CSP
        return "Must name a host of letters, digits, dots and hyphens (or an IP address)"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return "Must use https:// (http only for a server on this machine)"
    if parts.username or parts.password or parts.fragment:
        return "Must not carry credentials or a #fragment"
    if any(ch.isspace() for ch in url):
        return "Must not contain spaces"
    return None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def service_account_problem(text: str) -> str | None:
    """Why `text` is not a usable service-account key (never quoting the key)."""
    if len(text.encode("utf-8")) > MAX_SERVICE_ACCOUNT_BYTES:
        return f"Must be at most {MAX_SERVICE_ACCOUNT_BYTES // 1024} KB"
    try:
        key = json.loads(text)
    except ValueError:
        return "Must be the service account's JSON key file"
    if not isinstance(key, dict):
        return "Must be the service account's JSON key file"
    for name in ("client_email", "private_key"):
        if not isinstance(key.get(name), str) or not key[name].strip():
            return f"The JSON key has no {name}"
    if "PRIVATE KEY-----" not in key["private_key"]:
        return "The JSON key's private_key is not a PEM private key"
    return None


def client_email(text: str) -> str | None:
    try:
        key = json.loads(text)
    except ValueError:
        return None
    return key.get("client_email") if isinstance(key, dict) else None


def oauth_problems(values: dict, *, has_client_secret: bool, has_service_account: bool) -> dict[str, list[str]]:
    """Rules across the OAuth2 fields of a mailbox whose final values are `values` (the stored
    values with the payload applied). Empty when auth_method is not oauth2."""
    if values.get("auth_method") != OAUTH2:
        return {}
    errors: dict[str, list[str]] = {}

    def add(field, message):
        errors.setdefault(field, []).append(message)

    provider = PROVIDERS.get(values.get("oauth_provider") or "")
    flow = values.get("oauth_flow") or AUTHORIZATION_CODE
    if provider is None:
        add("oauth_provider", "Choose microsoft, google or custom for OAuth2 sign-in")
        return errors
    if flow not in provider.flows:
        allowed = ", ".join(provider.flows)
        add("oauth_flow", f"{provider.name} supports: {allowed}")
    if provider.name == "custom":
        if not values.get("oauth_token_url"):
            add("oauth_token_url", "Required for a custom provider")
        if flow == AUTHORIZATION_CODE and not values.get("oauth_authorize_url"):
            add("oauth_authorize_url", "Required for a custom provider's authorization code flow")
    tenant = values.get("oauth_tenant")
    if tenant:
        if provider.name != "microsoft":
            add("oauth_tenant", "Only used with microsoft")
        elif not TENANT_PATTERN.match(tenant):
            add("oauth_tenant", "Must be a tenant ID (GUID), a domain, or organizations/common")
    if provider.name == "microsoft" and flow == CLIENT_CREDENTIALS and (not tenant or tenant.lower() in SHARED_TENANTS):
        add("oauth_tenant", "App-only access needs your tenant ID or primary domain")
    if flow == SERVICE_ACCOUNT:
        if not has_service_account:
            add("oauth_service_account_json", "Required for the service account flow")
    elif not values.get("oauth_client_id"):
        add("oauth_client_id", "Required for OAuth2 sign-in")
    if flow == CLIENT_CREDENTIALS and not has_client_secret:
        add("oauth_client_secret", "Required for the client credentials flow")
    return errors


def uses_client_secret(values) -> bool:
    return values.get("auth_method") == OAUTH2 and (values.get("oauth_flow") or AUTHORIZATION_CODE) != SERVICE_ACCOUNT


def uses_service_account(values) -> bool:
    return values.get("auth_method") == OAUTH2 and values.get("oauth_flow") == SERVICE_ACCOUNT


# ----------------------------------------------------------------------------- provider answers

# The provider refused the grant itself: a person must act (reconnect, or fix the secret or key).
REAUTHORIZE_ERRORS = frozenset({
    "invalid_grant", "invalid_client", "unauthorized_client", "access_denied", "consent_required",
    "interaction_required", "invalid_scope",
})


def needs_person(error_code: str | None) -> bool:
    return (error_code or "") in REAUTHORIZE_ERRORS
