"""Credential encryption: HKDF-derived Fernet keys, fallbacks, and `crypto reencrypt`."""
import pytest

from portal import crypto

OLD = {"SECRET_KEY": "old-secret-key-aaaaaaaaaaaaaaaa", "SECRET_KEY_FALLBACKS": []}
NEW_WITH_FALLBACK = {"SECRET_KEY": "new-secret-key-bbbbbbbbbbbbbbbb", "SECRET_KEY_FALLBACKS": [OLD["SECRET_KEY"]]}
NEW_ONLY = {"SECRET_KEY": NEW_WITH_FALLBACK["SECRET_KEY"], "SECRET_KEY_FALLBACKS": []}


def test_round_trip_and_ciphertext_hides_plaintext():
    token = crypto.encrypt("hunter2-password", OLD)
    assert "hunter2" not in token
    assert crypto.decrypt(token, OLD) == "hunter2-password"
    assert crypto.encrypt("hunter2-password", OLD) != token  # random IV each time


def test_key_is_bound_to_purpose_and_secret():
    assert crypto.derive_key("s", b"a") != crypto.derive_key("s", b"b")
    assert crypto.derive_key("s1") != crypto.derive_key("s2")


def test_rotation_with_fallbacks_then_reencrypt():
    token = crypto.encrypt("mailbox-pw", OLD)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token, NEW_ONLY)
    assert crypto.decrypt(token, NEW_WITH_FALLBACK) == "mailbox-pw"
    rotated = crypto.reencrypt(token, NEW_WITH_FALLBACK)
    assert crypto.decrypt(rotated, NEW_ONLY) == "mailbox-pw"


def test_reencrypt_command_moves_every_mailbox_to_the_new_key(app, app_ctx):
    from portal.extensions import db
    from portal.imap.models import ENCRYPTED_COLUMNS, ImapAccount

    for index in range(3):
        db.session.add(ImapAccount(name=f"M{index}", host="h", username="u", password_encrypted=crypto.encrypt(f"pw{index}", OLD)))
    oauth_secrets = {column: f"{column}-value" for column in ENCRYPTED_COLUMNS if column != "password_encrypted"}
    db.session.add(ImapAccount(name="OAuth", host="h", username="u", auth_method="oauth2", **{
        column: crypto.encrypt(value, OLD) for column, value in oauth_secrets.items()}))
    db.session.commit()
    saved = (app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"])
    app.config.update(NEW_WITH_FALLBACK)
    try:
        result = app.test_cli_runner().invoke(args=["crypto", "reencrypt"])
        assert result.exit_code == 0, result.output
        assert "Re-encrypted 7 secret(s)" in result.output
        db.session.expire_all()
        accounts = db.session.query(ImapAccount).filter(ImapAccount.auth_method == "password").order_by(ImapAccount.name).all()
        assert [crypto.decrypt(a.password_encrypted, NEW_ONLY) for a in accounts] == ["pw0", "pw1", "pw2"]
        oauth = db.session.query(ImapAccount).filter_by(name="OAuth").one()
        # Client secret, service-account key, access and refresh tokens: all under the new key.
        assert {column: crypto.decrypt(getattr(oauth, column), NEW_ONLY) for column in oauth_secrets} == oauth_secrets
        app.config.update(NEW_ONLY)
        broken = ImapAccount(name="foreign", host="h", username="u", password_encrypted=crypto.encrypt("x", {"SECRET_KEY": "unrelated", "SECRET_KEY_FALLBACKS": []}))
        db.session.add(broken)
        db.session.commit()
        failed = app.test_cli_runner().invoke(args=["crypto", "reencrypt"])
        assert failed.exit_code == 1
        assert "cannot decrypt" in failed.output and "1 could not be decrypted" in failed.output
    finally:
        app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"] = saved


def test_config_refuses_production_without_secret_key(monkeypatch):
    from portal.config import ConfigError, load_config

    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("PORTAL_ENV", "production")
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        load_config()
    monkeypatch.setenv("SECRET_KEY", "a-real-secret-of-at-least-32-bytes!")
    monkeypatch.setenv("SECRET_KEY_FALLBACKS", "old1, old2,")
    config = load_config()
    assert config["SECRET_KEY_FALLBACKS"] == ["old1", "old2"]
