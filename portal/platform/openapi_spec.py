def build_spec() -> dict:
    return {"openapi": "3.0.3", "info": {"title": "MyPortal API", "version": "1.0"}, "paths": {}}
