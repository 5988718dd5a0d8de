#!/usr/bin/env python3
"""The project's own rules for the rendered overlays, beyond the schemas and checkov.

deploy/check.sh runs it (inside the check venv, which has PyYAML) as
    check_manifests.py dev.yaml prod.yaml
Each argument is one rendered overlay named after it. It checks what docs/deploy.md
promises: every service has its Deployment (gRPC startup/readiness/liveness probes on
the health service, the security context, requests and limits, a termination grace
period that covers preStop + SHUTDOWN_GRACE_SECONDS), a headless Service with a port
named grpc, a ServiceAccount without token, an HPA, a PDB, a NetworkPolicy, a
migration Job; the end-of-day CronJob; images pinned; every pod covered by a
NetworkPolicy of its own; and the per-overlay replica and spreading settings.
Exits 1 listing every violation.
"""

from __future__ import annotations

import pathlib
import sys

import yaml

NAMESPACE = "microloan"
SERVICES = {
    "account": (50051, 9101, "microloan.account.v1.AccountService"),
    "scoring": (50052, 9102, "microloan.scoring.v1.ScoringService"),
    "ledger": (50053, 9103, "microloan.ledger.v1.LedgerService"),
    "notification": (50054, 9104, "microloan.notification.v1.NotificationService"),
}
# Overlay name -> expected Deployment replicas for the four services.
REPLICAS = {"dev": 1, "prod": 3}
# Slack, beyond preStop + drain, for the telemetry flush and process exit.
EXIT_SLACK_SECONDS = 5


class Report:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def check(self, ok: bool, where: str, what: str) -> bool:
        if not ok:
            self.problems.append(f"{where}: {what}")
        return ok


def pod_spec(obj: dict) -> dict | None:
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return obj["spec"]["template"]["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "Pod":
        return obj["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict, labels: dict) -> bool:
    """matchLabels / matchExpressions (In, NotIn, Exists, DoesNotExist)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def check_security(r: Report, where: str, spec: dict) -> None:
    psc = spec.get("securityContext") or {}
    r.check(psc.get("runAsNonRoot") is True, where, "pod securityContext.runAsNonRoot must be true")
    r.check(
        (psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
        where,
        "pod seccompProfile must be RuntimeDefault",
    )
    r.check(spec.get("automountServiceAccountToken") is False, where, "automountServiceAccountToken must be false")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        r.check(sc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation must be false")
        r.check(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem must be true")
        r.check(
            (sc.get("capabilities") or {}).get("drop") == ["ALL"],
            cw,
            "capabilities must drop ALL",
        )
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for name in ("cpu", "memory"):
                r.check(name in (res.get(part) or {}), cw, f"resources.{part}.{name} missing")
        image = c.get("image", "")
        name_part, _, digest = image.partition("@")
        tag = name_part.rsplit("/", 1)[-1].partition(":")[2]
        r.check(bool(digest) or (bool(tag) and tag != "latest"), cw, f"image {image!r} is not pinned")


def check_overlay(r: Report, overlay: str, docs: list[dict]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        where = f"{overlay}: {d['kind']}/{d['metadata']['name']}"
        if d["kind"] != "Namespace":
            r.check(d["metadata"].get("namespace") == NAMESPACE, where, f"must be in namespace {NAMESPACE}")

    def get(kind: str, name: str) -> dict | None:
        obj = by_kind.get(kind, {}).get(name)
        r.check(obj is not None, overlay, f"{kind}/{name} missing")
        return obj

    configmaps = by_kind.get("ConfigMap", {})
    for svc, (grpc_port, metrics_port, grpc_service) in SERVICES.items():
        w = f"{overlay}: {svc}"
        dep = get("Deployment", svc)
        if dep is not None:
            spec = dep["spec"]["template"]["spec"]
            r.check(
                dep["spec"].get("replicas") == REPLICAS.get(overlay, dep["spec"].get("replicas")),
                w,
                f"Deployment replicas should be {REPLICAS.get(overlay)}",
            )
            c = spec["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            r.check(ports.get("grpc") == grpc_port, w, f"container port grpc must be {grpc_port}")
            r.check(ports.get("metrics") == metrics_port, w, f"container port metrics must be {metrics_port}")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                g = (c.get(probe) or {}).get("grpc")
                r.check(g is not None and g.get("port") == grpc_port, w, f"{probe} must be a gRPC probe on {grpc_port}")
            r.check(
                ((c.get("readinessProbe") or {}).get("grpc") or {}).get("service") == grpc_service,
                w,
                f"readinessProbe must ask for {grpc_service}",
            )
            # Drain timing: grace period > preStop sleep + SHUTDOWN_GRACE_SECONDS.
            pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds")
            r.check(pre_stop is not None, w, "preStop sleep missing")
            drain = None
            for src in c.get("envFrom", []):
                cm = configmaps.get((src.get("configMapRef") or {}).get("name", ""))
                if cm and "SHUTDOWN_GRACE_SECONDS" in cm.get("data", {}):
                    drain = int(cm["data"]["SHUTDOWN_GRACE_SECONDS"])
            r.check(drain is not None, w, "SHUTDOWN_GRACE_SECONDS not set by its ConfigMap")
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if pre_stop is not None and drain is not None:
                r.check(
                    grace >= pre_stop + drain + EXIT_SLACK_SECONDS,
                    w,
                    f"terminationGracePeriodSeconds {grace} < preStop {pre_stop} + drain {drain} + {EXIT_SLACK_SECONDS}",
                )
            env = {e["name"]: e for e in c.get("env", [])}
            for secret_var in ("DATABASE_URL", "REDIS_URL", "AUTH_JWT_SECRET"):
                r.check(
                    "secretKeyRef" in (env.get(secret_var, {}).get("valueFrom") or {}),
                    w,
                    f"{secret_var} must come from a Secret",
                )
            if overlay == "prod":
                anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
                keys = [
                    t["podAffinityTerm"]["topologyKey"]
                    for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
                ]
                r.check("topology.kubernetes.io/zone" in keys, w, "prod needs podAntiAffinity across zones")
        svc_obj = get("Service", svc)
        if svc_obj is not None:
            r.check(svc_obj["spec"].get("clusterIP") == "None", w, "Service must be headless (clusterIP: None)")
            grpc = [p for p in svc_obj["spec"]["ports"] if p.get("name") == "grpc"]
            r.check(
                len(grpc) == 1 and grpc[0]["port"] == grpc_port and grpc[0].get("appProtocol") == "grpc",
                w,
                "Service needs a port named grpc with appProtocol grpc",
            )
        sa = get("ServiceAccount", svc)
        if sa is not None:
            r.check(sa.get("automountServiceAccountToken") is False, w, "ServiceAccount must not automount a token")
        hpa = get("HorizontalPodAutoscaler", svc)
        if hpa is not None and dep is not None:
            r.check(hpa["spec"]["scaleTargetRef"]["name"] == svc, w, "HPA must target the Deployment")
            r.check(
                hpa["spec"]["minReplicas"] == dep["spec"].get("replicas"),
                w,
                "HPA minReplicas must equal the Deployment's replicas",
            )
        get("PodDisruptionBudget", svc)
        get("NetworkPolicy", svc)
        job = get("Job", f"{svc}-migrate")
        if job is not None:
            spec = job["spec"]["template"]["spec"]
            r.check(spec["containers"][0].get("args") == ["migrate"], w, "migration Job must run `<bin> migrate`")
            if dep is not None:
                r.check(
                    spec["containers"][0]["image"] == dep["spec"]["template"]["spec"]["containers"][0]["image"],
                    w,
                    "migration Job must run the Deployment's image",
                )

    cron = get("CronJob", "ledger-end-of-day")
    if cron is not None:
        w = f"{overlay}: CronJob/ledger-end-of-day"
        r.check(cron["spec"].get("concurrencyPolicy") == "Forbid", w, "concurrencyPolicy must be Forbid")
        spec = pod_spec(cron)
        args = spec["containers"][0].get("args", [])
        r.check("microloan.ledger.v1.LedgerService/RunEndOfDay" in args, w, "must call LedgerService/RunEndOfDay")

    # Every pod: locked down, and selected by a NetworkPolicy other than the
    # namespace default-deny.
    policies = [p for name, p in by_kind.get("NetworkPolicy", {}).items() if p["spec"].get("podSelector")]
    for kind, objs in by_kind.items():
        for name, obj in objs.items():
            if pod_spec(obj) is None:
                continue
            labels = pod_labels(obj)
            r.check(
                any(selects(p["spec"]["podSelector"], labels) for p in policies),
                f"{overlay}: {kind}/{name}",
                "no NetworkPolicy selects its pods",
            )
            check_security(r, f"{overlay}: {kind}/{name}", pod_spec(obj))


def main(argv: list[str]) -> int:
    r = Report()
    for arg in argv:
        path = pathlib.Path(arg)
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        check_overlay(r, path.stem, docs)
    for p in r.problems:
        print(f"  {p}", file=sys.stderr)
    if r.problems:
        print(f"check_manifests: {len(r.problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_manifests: {', '.join(pathlib.Path(a).stem for a in argv)} follow the deploy rules")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
