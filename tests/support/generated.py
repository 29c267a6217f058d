"""Files generated from the code: the README's action table and the deploy manifests' RBAC.

``make docs`` (``python -m tests.support.generated``) rewrites them; tests/unit/test_generated.py
fails when they are stale, so the catalogue is written once, in the registry:

- deploy/kustomize/base/playbooks/rules/: a copy of rules/*.yaml, the playbooks the base deploys;
- deploy/kustomize/base/rbac.yaml: ``kurative rbac`` for those playbooks and the base's daemon config
  (kurative.yaml: the Kubernetes Secrets its secretRefs name);
- deploy/kustomize/examples/own-playbooks/rbac-patch.yaml: the ClusterRole for the base's playbooks
  plus the example's own, as a patch of the base's ClusterRole.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from ruamel.yaml import YAML

from kurative.adapters.secrets import KubernetesSecret
from kurative.cli import main
from kurative.config import Overrides, load_settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RULES = ROOT / "rules"
KUSTOMIZE = ROOT / "deploy" / "kustomize"
BASE = KUSTOMIZE / "base"
BASE_RULES = BASE / "playbooks" / "rules"
BASE_CONFIG = BASE / "kurative.yaml"
RBAC = BASE / "rbac.yaml"
OWN = KUSTOMIZE / "examples" / "own-playbooks"
OWN_RBAC = OWN / "rbac-patch.yaml"
NAMESPACE = "kurative"
BLOCK = re.compile(r"(<!-- actions:begin[^>]*-->\n)(.*?)(<!-- actions:end -->)", re.DOTALL)


def run_cli(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    if code != 0:
        raise RuntimeError(f"kurative {' '.join(args)} exited {code}")
    return out.getvalue()


def readme_with_table(readme: str) -> str:
    table = run_cli("actions", "--format", "markdown")
    if not BLOCK.search(readme):
        raise RuntimeError("README.md lost its <!-- actions:begin --> / <!-- actions:end --> markers")
    return BLOCK.sub(lambda m: m.group(1) + table + m.group(3), readme)


def _relative(text: str) -> str:
    return text.replace(str(ROOT) + "/", "")


SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/playbook.v1.json"
# From deploy/kustomize/base/playbooks/rules/ to the repository's schemas/.
COPY_SCHEMA_LINE = "# yaml-language-server: $schema=../../../../../schemas/playbook.v1.json"


def base_playbooks() -> dict[str, str]:
    """File name -> content of the playbooks the base deploys (the top level of rules/).

    The copies' `$schema` comment is rewritten for their folder, so editors still validate them.
    """
    return {
        path.name: path.read_text().replace(SCHEMA_LINE, COPY_SCHEMA_LINE)
        for path in sorted(RULES.glob("*.yaml"))
    }


def secrets_outside_the_namespace(config: Path, namespace: str = NAMESPACE) -> list[str]:
    """``namespace/name`` of the config's Kubernetes Secrets that are not in kurative's namespace."""
    settings = load_settings(Overrides(config=config), environ={})
    return sorted(
        f"{source.namespace}/{source.name}"
        for source in settings.secrets.sources.values()
        if isinstance(source, KubernetesSecret) and source.namespace != namespace
    )


def rbac_for_rules(config: Path = BASE_CONFIG) -> str:
    """What `kurative rbac` prints for the base: its playbooks and its daemon config.

    Refused when a Kubernetes Secret of the config lives outside kurative's namespace: the base's
    kustomization sets `namespace: kurative`, which would move that Secret's Role (and its grant)
    into kurative's namespace.
    """
    outside = secrets_outside_the_namespace(config)
    if outside:
        raise RuntimeError(
            f"{config.name}: the Kubernetes Secrets {', '.join(outside)} are outside the namespace "
            f"{NAMESPACE!r}; the kustomization's `namespace: {NAMESPACE}` would move their Role there. "
            f"Keep the deployed Secrets in {NAMESPACE!r} (or apply `kurative rbac --config` for the "
            "others outside the kustomization)"
        )
    return _relative(run_cli("rbac", "--rules", str(BASE_RULES), "--config", str(config)))


def own_rbac_patch() -> str:
    """Patches of the base's ClusterRole and Secret Role for the base's and the example's playbooks.

    Generated with the base's daemon config (`--config`), so a Secret that the example's playbooks
    reference is granted too.
    """
    printed = run_cli(
        "rbac", "--rules", str(BASE_RULES), "--rules", str(OWN / "rules"), "--config", str(BASE_CONFIG)
    )
    docs = [d for d in YAML(typ="safe").load_all(printed) if d and d["kind"] in ("ClusterRole", "Role")]
    header = "".join(line + "\n" for line in _relative(printed).splitlines() if line.startswith("#"))
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump_all(docs, out)
    return (
        "# Patches of the base's ClusterRole and Secret Role: their rules replace the base's (a list\n"
        "# without merge key). `make docs` regenerates it with:\n"
        "#   kurative rbac --rules deploy/kustomize/base/playbooks/rules \\\n"
        "#     --rules deploy/kustomize/examples/own-playbooks/rules \\\n"
        "#     --config deploy/kustomize/base/kurative.yaml\n" + header + out.getvalue()
    )


def update() -> None:
    README.write_text(readme_with_table(README.read_text()))
    BASE_RULES.mkdir(parents=True, exist_ok=True)
    wanted = base_playbooks()
    for stale in BASE_RULES.glob("*.yaml"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        (BASE_RULES / name).write_text(text)
    RBAC.write_text(rbac_for_rules())
    OWN_RBAC.write_text(own_rbac_patch())


if __name__ == "__main__":
    update()
