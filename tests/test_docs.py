"""The config reference names every key the schema accepts (docs that cannot silently rot)."""

from pathlib import Path

from pydantic import BaseModel

from simulator.config.models import Config

DOC = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()


def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and name != "topology":
            out += keys(ann, dotted + ".")
        else:
            out.append(dotted)
    return out


def test_every_config_key_is_documented():
    missing = [k for k in keys(Config) if k.split(".")[-1] not in DOC or k.split(".")[0] not in DOC]
    assert missing == []
    for key in keys(Config):
        leaf = key.rsplit(".", 1)[-1]
        assert f"`{key}`" in DOC or f".{leaf}`" in DOC or f"`{leaf}`" in DOC, key
