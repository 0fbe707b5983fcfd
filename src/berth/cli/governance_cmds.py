"""`berth rates set | show`, `berth usage`, `berth audit` and `berth quota set | list`: the operator's side of
metering, billing, the audit log and quotas, acting directly on a data dir's store (as `berth token` does).
Rate and quota changes are audited."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from berth.cli.server_cmds import store_command
from berth.clock import SystemClock
from berth.errors import BerthError
from berth.services.audit import AuditLog, local_actor
from berth.services.billing import BillingService
from berth.services.metering import MeteringService
from berth.services.quotas import RESOURCES, QuotaService
from berth.store.ports import Stores

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """'90m', '24h', '7d' → seconds."""
    unit = _UNITS.get(text[-1:])
    if unit is None or not text[:-1].replace(".", "", 1).isdigit():
        raise BerthError(f"Cannot read the time span {text!r}: use e.g. 30m, 24h or 7d")
    return float(text[:-1]) * unit


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


async def _rates(args: argparse.Namespace, stores: Stores) -> None:
    clock = SystemClock()
    billing = BillingService(stores.governance, MeteringService(stores.governance, stores.core, clock))
    if args.rates_command == "set":
        pairs = dict(p.partition("=")[::2] for p in args.pairs)
        if not pairs or any(not k or not v for k, v in pairs.items()):
            raise BerthError("Give rates as RESOURCE=RATE, e.g. cpu=0.0000131 memory=0.00000222 gpu:A100=0.000583")
        await billing.set_rates(pairs)
        details = {k: "default" if v == "default" else "set" for k, v in pairs.items()}
        await AuditLog(stores.governance, clock).record(
            local_actor(), "rates.set", "rates", "workspace", "", "ok", details
        )
    print(billing.formatted(await billing.rates()))


async def _usage(args: argparse.Namespace, stores: Stores) -> None:
    metering = MeteringService(stores.governance, stores.core, SystemClock())
    now = time.time()
    groups = await metering.rollup(now - parse_since(args.since), now + 60, args.by)
    if args.json:
        print(
            json.dumps(
                [{"key": g.key, "cpu_s": g.cpu_s, "memory_gib_s": g.memory_gib_s, "gpu_s": g.gpu_s} for g in groups]
            )
        )
        return
    print(f"{args.by}\tcpu_core_seconds\tmemory_gib_seconds\tgpu_seconds")
    for g in groups:
        print(f"{g.key}\t{g.cpu_s:.3f}\t{g.memory_gib_s:.3f}\t{sum(g.gpu_s.values()):.3f}")


async def _audit(args: argparse.Namespace, stores: Stores) -> None:
    now = time.time()
    entries = await AuditLog(stores.governance, SystemClock()).entries(
        now - parse_since(args.since), now + 1, args.limit
    )
    if args.json:
        print(json.dumps([{**e.__dict__, "at": _when(e.at)} for e in entries]))
        return
    for e in entries:
        details = " ".join(f"{k}={v}" for k, v in sorted(e.details.items()))
        env = f" env={e.environment}" if e.environment else ""
        print(
            f"{_when(e.at)}\t{e.actor}\t{e.action}\t{e.target_type}:{e.target_id}\t{e.status}{env} {details}".rstrip()
        )


async def _quota(args: argparse.Namespace, stores: Stores) -> None:
    clock = SystemClock()
    quotas = QuotaService(stores.governance, stores.core, stores.web, AuditLog(stores.governance, clock), clock)
    if args.quota_command == "set":
        limits: dict[str, int] = {}
        for pair in args.pairs:
            resource, _, value = pair.partition("=")
            if value == "none":
                limits[resource] = -1
            elif value.isdigit():
                limits[resource] = int(value)
            else:
                raise BerthError(f"Give quotas as RESOURCE=N (or RESOURCE=none to remove one), not {pair!r}")
        await quotas.set(args.env, limits, local_actor())
    for q in await quotas.quotas():
        print(f"{q.scope}\t{q.resource}\t{q.limit}")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rates = sub.add_parser("rates", help="show or set the rates usage is priced at (USD per second)")
    actions = rates.add_subparsers(dest="rates_command", required=True)
    set_ = actions.add_parser("set", help="set rates: cpu=R memory=R gpu=R gpu:TYPE=R (R=default resets one)")
    set_.add_argument("pairs", nargs="+", metavar="RESOURCE=RATE")
    show = actions.add_parser("show", help="the rates in force")
    rates.set_defaults(func=store_command(_rates))

    usage = sub.add_parser("usage", help="metered CPU, memory and GPU use, summed per function, app, env or tag")
    usage.add_argument("--by", default="function", help="function (default), app, environment or tag:NAME")
    usage.add_argument("--since", default="24h", help="how far back (e.g. 30m, 24h, 7d; default 24h)")
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(func=store_command(_usage))

    audit = sub.add_parser("audit", help="the audit log: who did what administrative action, and when")
    audit.add_argument("--since", default="7d", help="how far back (e.g. 30m, 24h, 7d; default 7d)")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=store_command(_audit))
    quota = sub.add_parser("quota", help="set and list quotas per environment or for the whole workspace")
    quota_actions = quota.add_subparsers(dest="quota_command", required=True)
    quota_set = quota_actions.add_parser(
        "set", help=f"set quotas: RESOURCE=N or RESOURCE=none ({', '.join(RESOURCES)})"
    )
    quota_set.add_argument("pairs", nargs="+", metavar="RESOURCE=N")
    quota_set.add_argument("--env", help="the environment the quotas are for (default: the whole workspace)")
    quota_list = quota_actions.add_parser("list", help="the quotas in force")
    quota.set_defaults(func=store_command(_quota))
    for p in (rates, set_, show, usage, audit, quota, quota_set, quota_list):
        p.add_argument("--data-dir")
