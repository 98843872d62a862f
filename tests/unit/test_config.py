"""Settings: which environment may use the built-in key, key length, cookie and proxy settings."""
import pytest

from portal.config import DEV_SECRET_KEY, ConfigError, load_config

GOOD_KEY = "k" * 32


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("PORTAL_ENV", "FLASK_ENV", "SECRET_KEY", "PREFERRED_URL_SCHEME", "PROXY_FIX_HOPS", "SESSION_IDLE_MINUTES"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_flask_env_development_does_not_enable_the_development_key(clean_env):
    clean_env.setenv("FLASK_ENV", "development")
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        load_config()


def test_portal_env_development_enables_it_only_without_a_key(clean_env):
    clean_env.setenv("PORTAL_ENV", "development")
    assert load_config()["SECRET_KEY"] == DEV_SECRET_KEY
    clean_env.setenv("SECRET_KEY", GOOD_KEY)
    assert load_config()["SECRET_KEY"] == GOOD_KEY


@pytest.mark.parametrize("environment", ["production", "development"])
def test_short_keys_are_refused(clean_env, environment):
    clean_env.setenv("PORTAL_ENV", environment)
    clean_env.setenv("SECRET_KEY", "k" * 31)
    with pytest.raises(ConfigError, match="shorter than 32 bytes"):
        load_config()
    clean_env.setenv("SECRET_KEY", "é" * 16)  # 32 bytes in UTF-8
    assert load_config()["SECRET_KEY"] == "é" * 16


def test_the_development_key_is_refused_in_production(clean_env):
    with pytest.raises(ConfigError):
        load_config({"SECRET_KEY": DEV_SECRET_KEY})


def test_testing_accepts_short_keys(clean_env):
    clean_env.setenv("PORTAL_ENV", "testing")
    assert load_config({"SECRET_KEY": "short"})["SECRET_KEY"] == "short"


def test_cookies_follow_the_scheme_and_idle_limit(clean_env):
    clean_env.setenv("SECRET_KEY", GOOD_KEY)
    plain = load_config()
    assert plain["SESSION_COOKIE_SECURE"] is False and plain["PROXY_FIX_HOPS"] == 0
    clean_env.setenv("PREFERRED_URL_SCHEME", "https")
    clean_env.setenv("SESSION_IDLE_MINUTES", "30")
    secure = load_config()
    assert secure["SESSION_COOKIE_SECURE"] and secure["REMEMBER_COOKIE_SECURE"]
    assert secure["PERMANENT_SESSION_LIFETIME"].total_seconds() == 30 * 60
    assert secure["REMEMBER_COOKIE_DURATION"].total_seconds() == 30 * 60


def test_login_limits_have_defaults(clean_env):
    clean_env.setenv("SECRET_KEY", GOOD_KEY)
    config = load_config()
    assert (config["LOGIN_MAX_ATTEMPTS_PER_ACCOUNT"], config["LOGIN_MAX_ATTEMPTS_PER_ADDRESS"]) == (10, 50)
    assert config["LOGIN_ATTEMPT_WINDOW_SECONDS"] == 900


def test_rediss_urls_with_a_password_are_accepted(clean_env):
    from redis.connection import SSLConnection

    from portal import create_app
    from portal.extensions import get_redis

    app = create_app({"PORTAL_ENV": "testing", "SECRET_KEY": GOOD_KEY, "SQLALCHEMY_DATABASE_URI": "sqlite://",
                      "REDIS_URL": "rediss://:s3cret@redis.example.net:6380/2"}, web=False)
    with app.app_context():
        pool = get_redis().connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["password"] == "s3cret" and pool.connection_kwargs["db"] == 2
