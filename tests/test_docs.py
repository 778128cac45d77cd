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


def test_every_summary_key_and_csv_column_is_defined_in_the_results_section():
    """Run jobs that between them produce every key and table; each must be named in docs/config.md."""
    import glob

    from simulator.config import load_config
    from simulator.results import IterationRecord
    from simulator.run import simulate
    from tests.simulator.test_engine_matrix import CONVERGENCE, STRAGGLERS, job

    results = DOC.split("## Results", 1)[1]
    examples = Path(__file__).resolve().parents[1] / "examples"
    configs = [load_config(p) for p in sorted(glob.glob(str(examples / "0[1-4]*.yaml")))]
    configs += [load_config(job("hybrid", "ps-asp", stragglers=STRAGGLERS, **{"training.convergence": {
        **CONVERGENCE, "target_loss": 0.6}})),
        load_config(job("data", "allreduce", **{"communication.algorithm": "auto"}))]
    configs += [load_config(job("data", **{"communication.compression": "topk"})),
                load_config(job("data", **{"sync.mode": "local_sgd", "sync.period": 2}))]
    faults = {"devices": {"mtbf": "30s"}, "repair": "2s", "checkpoint": {"every": 10, "bandwidth": "50GB/s"}}
    configs += [load_config(job("data", "ps-bsp", **{"faults": faults, "training.iterations": 200,
                                                      "training.replications": 2}))]
    names = set(IterationRecord.__dataclass_fields__)
    for cfg in configs:
        result = simulate(cfg)
        names |= set(result.summary)
        names |= {f"{table}.csv" for table in result.tables}
        names |= {col for rows in result.tables.values() for col in (rows[0] if rows else {})}
    # replications add <key>_ci95 (and <key>_replications) for every numeric key: documented once, generically
    generic = {n for n in names if n.endswith(("_ci95", "_replications")) and n != "replications"}
    assert generic and "`<key>_ci95`" in results and "`<key>_replications`" in results
    missing = sorted(n for n in names - generic if f"`{n}`" not in results)
    assert missing == []
