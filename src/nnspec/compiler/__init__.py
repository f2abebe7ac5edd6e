"""The spec compiler: schema (pydantic), loader (TOML, ``extends``), codegen (jinja2)."""
