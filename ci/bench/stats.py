#!/usr/bin/python3
"""Statistics and Markdown tables for ci/bench/run.

ci/bench/run only runs commands: it builds, sets up, and calls hyperfine
with --export-json. Every figure the bench prints is computed here, from
those JSON files (and, for the memory and profile sections, from the raw
outputs of GNU time, strace and perf), with the standard library only, so
that it runs on any Debian python3.

Each subcommand prints one piece of the report on stdout. The verdicts on
the bench's targets are appended to a targets file (--targets), one line
each, and printed together at the end by `targets`.

    stats.py pool RAW.json OUT.json
    stats.py table SECTION.json REFERENCE
    stats.py scaling SECTION.json UNIT --counts N... --columns NAME...
    stats.py linking SECTION.json --row BACKEND STATIC DYNAMIC [--row ...]
    stats.py runtime SECTION.json --targets FILE WORKLOAD...
    stats.py target --targets FILE DESCRIPTION SECTION.json \\
                    VALUE_KEY VALUE_NAME REFERENCE_KEY REFERENCE_NAME BOUND
    stats.py miss --targets FILE DESCRIPTION
    stats.py targets FILE
    stats.py memory SAMPLES.tsv [--binary NAME PATH]...
    stats.py header MODE LOAD
    stats.py syscalls LABEL TRACE SUMMARY
    stats.py perf LABEL LAUNCHES BY_COMM BY_DSO BY_SYMBOL

All times in hyperfine's JSON are in seconds; the tables show milliseconds.
"""

import argparse
import datetime
import json
import math
import os
import re
import sys

# --- statistics ----------------------------------------------------------------


def median(values):
    """The middle value, or the mean of the two middle values."""
    s = sorted(values)
    n = len(s)
    if n == 0:
        raise ValueError("median of nothing")
    if n % 2 == 1:
        return s[n // 2]
    return (s[n // 2 - 1] + s[n // 2]) / 2


def lower_median(values):
    """The middle value, or the lower of the two middle values: for integer
    samples such as kilobytes, a value that was actually measured."""
    s = sorted(values)
    return s[(len(s) + 1) // 2 - 1]


def plain_sum(values):
    """The sum, added left to right. Python 3.12's sum() compensates the
    rounding of floats; the bench's figures should not depend on the Python
    that prints them."""
    total = 0.0
    for v in values:
        total += v
    return total


def mean(values):
    """The arithmetic mean."""
    return plain_sum(values) / len(values)


def sample_stddev(values):
    """The sample standard deviation (n - 1 in the denominator); 0 for a
    single value, which has no spread to estimate."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(plain_sum((v - m) * (v - m) for v in values) / (len(values) - 1))


def least_squares_slope(points):
    """The slope of the least-squares line through (x, y) points."""
    n = sx = sy = sxx = sxy = 0
    for x, y in points:
        n += 1
        sx += x
        sy += y
        sxx += x * x
        sxy += x * y
    return (n * sxy - sx * sy) / (n * sxx - sx * sx)


def ratio_noise(net, workload, reference, count):
    """Three standard errors of NET, the ratio of WORKLOAD to REFERENCE (two
    hyperfine results), from their relative deviations; never below 2 %,
    about the drift between otherwise identical runs."""
    rel = math.sqrt((reference["stddev"] / reference["median"]) ** 2
                    + (workload["stddev"] / workload["median"]) ** 2)
    return max(3 * net * rel / math.sqrt(count), 0.02)


def awk_number(text):
    """The leading number of TEXT, 0 when there is none, as awk reads
    "12.5%" or "12.5"."""
    m = re.match(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text)
    return float(m.group(0)) if m else 0.0


# --- hyperfine's results ----------------------------------------------------------


def load_results(path):
    """The results of a pooled section file, by command name, in order."""
    with open(path, encoding="utf-8") as f:
        return {r["command"]: r for r in json.load(f)["results"]}


def result(results, name):
    """The result named NAME; a missing one is a bug in the caller."""
    try:
        return results[name]
    except KeyError:
        sys.exit(f"stats.py: no command named {name!r} (have: {', '.join(results)})")


def pool(raw):
    """Pools the rounds of one hyperfine invocation.

    ci/bench/run names each command once per round, "NAME [1]", "NAME [2]"
    and so on, every other round in reverse order, so that a machine that
    speeds up or slows down during the invocation weighs on every command
    alike. The rounds' run times are joined into one result per command."""
    by_name = {}
    for r in raw["results"]:
        m = re.fullmatch(r"(.*) \[\d+\]", r["command"])
        if m:
            by_name.setdefault(m.group(1), []).extend(r["times"])
    results = []
    for name, times in by_name.items():
        results.append({
            "command": name,
            "median": median(times),
            "mean": mean(times),
            "stddev": sample_stddev(times),
            "min": min(times),
            "max": max(times),
            "runs": len(times),
            "times": times,
        })
    return {"results": results}


def ms(seconds):
    """Seconds as milliseconds."""
    return seconds * 1e3


# --- tables --------------------------------------------------------------------


def table(results, reference, also=()):
    """Every command of a section with its spread and its ratio to REFERENCE,
    and to each of ALSO in further columns (e.g. the plain and the fair floor)."""
    refs = [(name, result(results, name)["median"]) for name in [reference, *also]]
    lines = ["| command | median | mean ± σ | min | runs |" + "".join(f" × {n} |" for n, _ in refs),
             "|---|--:|--:|--:|--:|" + "--:|" * len(refs)]
    for r in results.values():
        lines.append(f"| {r['command']} | {ms(r['median']):.2f} ms "
                     f"| {ms(r['mean']):.2f} ± {ms(r['stddev']):.2f} ms "
                     f"| {ms(r['min']):.2f} ms | {r['runs']} |"
                     + "".join(f" {r['median'] / v:.2f} |" for _, v in refs))
    return lines


def scaling(results, unit, counts, columns):
    """One row per count, one column per launcher (the command "NAME @COUNT"),
    and a last row with the least-squares cost of one more unit."""
    lines = ["| " + unit + " |" + "".join(f" {c} |" for c in columns),
             "|--:|" + "--:|" * len(columns)]
    for n in counts:
        cells = "".join(f" {ms(result(results, f'{c} @{n}')['median']):.2f} ms |" for c in columns)
        lines.append(f"| {n} |{cells}")
    one = unit[:-1] if unit.endswith("s") else unit
    slopes = (least_squares_slope((n, result(results, f"{c} @{n}")["median"]) for n in counts)
              for c in columns)
    lines.append(f"| per {one} (fit) |" + "".join(f" {s * 1e6:.1f} µs |" for s in slopes))
    return lines


def linking(results, rows):
    """Each backend's median with each linking, and dynamic over static."""

    def cell(r):
        return f"{ms(r['median']):.2f} ms" if r else "not measured"

    lines = ["| backend | static-pie | dynamic | dynamic / static |", "|---|--:|--:|--:|"]
    for backend, static, dynamic in rows:
        s = results.get(static)
        d = results.get(dynamic)
        ratio = f"{d['median'] / s['median']:.2f}" if s and d else "—"
        lines.append(f"| {backend} | {cell(s)} | {cell(d)} | {ratio} |")
    return lines


def runtime(results, workloads):
    """The run-time table: each workload in a root chroot and through
    distrorun, their ratio, and the ratio once each side's start-up (its
    /bin/true row) is subtracted. Returns the lines and the verdicts."""
    lines = ["| workload | chroot | distrorun | ratio | ratio, start-up subtracted | noise |",
             "|---|--:|--:|--:|--:|--:|"]
    verdicts = []
    ct = result(results, "chroot: true")["median"]
    dt = result(results, "distrorun: true")["median"]
    for w in workloads:
        c = result(results, "chroot: " + w)
        d = result(results, "distrorun: " + w)
        # Judged on the figures as printed, so that the verdict never
        # contradicts the line it is printed with.
        net = (d["median"] - dt) / (c["median"] - ct)
        noise = ratio_noise(net, d, c, c["runs"])
        net, noise = round_as_printed(net, 3), round_as_printed(noise, 3)
        lines.append(f"| {w} | {ms(c['median']):.1f} ms | {ms(d['median']):.1f} ms "
                     f"| {d['median'] / c['median']:.3f} | {net:.3f} | ±{noise:.3f} |")
        verdict = "PASS" if net - 1 <= noise else "MISS"
        verdicts.append(f"{verdict} run-time overhead 1.00 ({w}): {net:.3f} "
                        f"with start-up subtracted, noise ±{noise:.3f}")
    return lines, verdicts


def round_as_printed(x, digits):
    """X as it reads when printed with DIGITS decimals."""
    return float(f"{x:.{digits}f}")


def target(desc, results, value_key, value_name, ref_key, ref_name, bound, beside=None):
    """The verdict on one target: VALUE's median at most BOUND times
    REFERENCE's. A command missing from the section was left out of the
    bench (unavailable here), which is a miss. BESIDE, a pair of command
    names (a floor of the job and what it is held against), adds that
    pair's ratio in the same run, so that a bound that even the floor
    misses shows as such."""
    v = results.get(value_name)
    r = results.get(ref_name)
    if v is None or r is None:
        return f"MISS {desc}: not measured ({value_key} or {ref_key} unavailable)"
    v, r = v["median"], r["median"]
    verdict = "PASS" if v / r <= bound else "MISS"
    line = f"{verdict} {desc}: {v / r:.3f} ({ms(v):.2f} ms / {ms(r):.2f} ms), bound {bound:.2f}"
    if beside:
        fv, fr = (results.get(name) for name in beside)
        if fv is not None and fr is not None:
            line += f"; {beside[0]} / {beside[1]}: {fv['median'] / fr['median']:.3f}"
    return line


def memory(samples, binaries):
    """Peak RSS per launcher (the lower median of its samples, in KiB) and
    the sizes of the release binaries."""
    by_label = {}
    for label, kib in samples:
        by_label.setdefault(label, []).append(kib)
    lines = ["| command | max RSS |", "|---|--:|"]
    lines += [f"| {label} | {lower_median(v)} KiB |" for label, v in by_label.items()]
    lines += ["",
              "GNU time reports the peak over the whole process, across its execs: for distrorun the",
              "larger of its own peak (and the helper's) and /bin/true's, which the first row shows."]
    if binaries:
        lines += ["", "| stripped release binary | size |", "|---|--:|"]
        lines += [f"| {name} | {os.stat(path).st_size // 1024} KiB |" for name, path in binaries]
    return lines


def read_samples(path):
    """LABEL<TAB>KIB lines, as ci/bench/run writes them from GNU time's %M."""
    samples = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, _, value = line.rstrip("\n").rpartition("\t")
            if label:
                samples.append((label, int(value)))
    return samples


def header(mode, load):
    """The report's first line, and a warning when the machine was busy."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    lines = [f"# distrorun {'profile' if mode == 'profile' else 'benchmarks'}, {now} UTC, "
             f"{len(os.sched_getaffinity(0))} CPUs, kernel {os.uname().release}, "
             f"load before the build {load}"]
    # Other work on the machine shows up as noise in every table.
    if awk_number(load) > 0.5:
        lines += ["", f"Warning: the machine was busy when the run started (load {load}); "
                      "expect noisy numbers."]
    return lines


# --- profile mode ------------------------------------------------------------------

MILESTONE = re.compile(r"(execve|unshare|pivot_root|memfd_create|setresuid|exit_group)\(")


def strace_seconds(clock):
    """strace -tt's HH:MM:SS.micro as seconds since midnight; None for
    anything else."""
    parts = clock.split(":")
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])
    except ValueError:
        return None


def syscalls(label, trace_path, summary_path):
    """One launch's system calls: how many, the milestones of the launch with
    their times from the first call, and strace -c's summary."""
    try:
        with open(trace_path, encoding="utf-8", errors="replace") as f:
            trace = f.read().splitlines()
    except FileNotFoundError:
        trace = []
    calls = sum(1 for line in trace if line[:1].isdigit())
    lines = ["", f"### System calls: {label}", "",
             f"{calls} calls; milestones (times inflated by strace):", "", "```"]
    t0 = None
    seen_open_tree = False
    for line in trace:
        fields = line.split()
        t = strace_seconds(fields[1]) if len(fields) >= 3 else None
        if t is None:
            continue
        if t0 is None:
            t0 = t
        # Only the first open_tree: there is one per volume.
        first_open_tree = fields[2].startswith("open_tree(") and not seen_open_tree
        if MILESTONE.match(fields[2]) or first_open_tree:
            seen_open_tree = seen_open_tree or first_open_tree
            # strace pads the pid to five columns.
            call = re.sub(r"^[0-9]+ +[0-9:.]+ ", "", line, count=1)
            lines.append(f"+{(t - t0) * 1e3:7.3f} ms  {call[:100]}")
    lines.append("")
    try:
        with open(summary_path, encoding="utf-8", errors="replace") as f:
            lines += f.read().splitlines()[:25]
    except FileNotFoundError:
        pass
    lines.append("```")
    return lines


PERF_SYMBOLS = re.compile(r"(__x64_sys_|asm_exc_page_fault$|_dl_relocate_object$|init_cpu_features"
                          r"|__cpu_indicator_init$|handle_amd$|handle_intel$)")


def perf_rows(path, comm_field):
    """The rows of a perf report --stdio whose command (field COMM_FIELD)
    is distrorun's, as lists of fields; perf cuts the name to "distror"."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if "%" in line and len(fields) > comm_field and fields[comm_field].startswith("distror"):
                rows.append(fields)
    return rows


def perf(label, launches, by_comm, by_dso, by_symbol):
    """Shares of the distrorun process's CPU samples, by library and by
    system call or activity; nothing when it has no samples."""
    total = plain_sum(awk_number(f[0]) for f in perf_rows(by_comm, 1))
    if total <= 0:
        return []
    lines = ["", f"### perf record: {label}, {launches} launches "
                 "(share of the distrorun process's CPU samples)", "", "```",
             "by library (distrorun itself is stripped):"]
    for f in perf_rows(by_dso, 1)[:8]:
        lines.append(f"{awk_number(f[0]) / total * 100:6.1f}%  {f[2] if len(f) > 2 else ''}")
    lines += ["", "by system call and activity, inclusive of what each calls:"]
    picked = [f for f in perf_rows(by_symbol, 2) if len(f) > 4 and PERF_SYMBOLS.match(f[4])]
    for f in picked[:18]:
        lines.append(f"{awk_number(f[0]) / total * 100:6.1f}%  {f[4]}")
    lines.append("```")
    return lines


# --- command line --------------------------------------------------------------------


def append_targets(path, verdicts):
    """Adds verdict lines to the targets file."""
    with open(path, "a", encoding="utf-8") as f:
        for v in verdicts:
            f.write(v + "\n")


def emit(lines):
    """Prints lines on stdout."""
    sys.stdout.write("".join(line + "\n" for line in lines))


def main(argv):
    """Parses the command line and runs one subcommand."""
    p = argparse.ArgumentParser(prog="stats.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("pool", help="pool the rounds of a hyperfine JSON export")
    s.add_argument("raw")
    s.add_argument("out")

    s = sub.add_parser("table", help="a section's commands with their ratio to one of them")
    s.add_argument("section")
    s.add_argument("reference")
    s.add_argument("--also", nargs="+", default=[], help="further references, a ratio column each")

    s = sub.add_parser("scaling", help="a pivot of NAME @COUNT commands and the cost per unit")
    s.add_argument("section")
    s.add_argument("unit")
    s.add_argument("--counts", nargs="+", type=int, required=True)
    s.add_argument("--columns", nargs="+", required=True)

    s = sub.add_parser("linking", help="medians per backend, static-pie and dynamic")
    s.add_argument("section")
    s.add_argument("--row", nargs=3, action="append", required=True,
                   metavar=("BACKEND", "STATIC", "DYNAMIC"))

    s = sub.add_parser("runtime", help="the run-time overhead table and its verdicts")
    s.add_argument("section")
    s.add_argument("--targets", required=True)
    s.add_argument("workloads", nargs="+")

    s = sub.add_parser("target", help="the verdict on one target")
    s.add_argument("--targets", required=True)
    for a in ("description", "section", "value_key", "value_name", "ref_key", "ref_name"):
        s.add_argument(a)
    s.add_argument("bound", type=float)
    s.add_argument("--beside", nargs=2, metavar=("VALUE_NAME", "REF_NAME"),
                   help="a floor's ratio in the same run, shown beside the verdict")

    s = sub.add_parser("miss", help="a target that could not be measured")
    s.add_argument("--targets", required=True)
    s.add_argument("description")

    s = sub.add_parser("targets", help="print the verdicts")
    s.add_argument("file")

    s = sub.add_parser("memory", help="peak RSS and binary sizes")
    s.add_argument("samples")
    s.add_argument("--binary", nargs=2, action="append", default=[], metavar=("NAME", "PATH"))

    s = sub.add_parser("header", help="the report's first line")
    s.add_argument("mode")
    s.add_argument("load")

    s = sub.add_parser("syscalls", help="milestones and counts of one strace")
    s.add_argument("label")
    s.add_argument("trace")
    s.add_argument("summary")

    s = sub.add_parser("perf", help="shares of the CPU samples in three perf reports")
    s.add_argument("label")
    s.add_argument("launches")
    s.add_argument("by_comm")
    s.add_argument("by_dso")
    s.add_argument("by_symbol")

    a = p.parse_args(argv)
    if a.cmd == "pool":
        with open(a.raw, encoding="utf-8") as f:
            pooled = pool(json.load(f))
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(pooled, f, indent=2)
            f.write("\n")
    elif a.cmd == "table":
        emit(table(load_results(a.section), a.reference, a.also))
    elif a.cmd == "scaling":
        emit(scaling(load_results(a.section), a.unit, a.counts, a.columns))
    elif a.cmd == "linking":
        emit(linking(load_results(a.section), a.row))
    elif a.cmd == "runtime":
        lines, verdicts = runtime(load_results(a.section), a.workloads)
        emit(lines)
        append_targets(a.targets, verdicts)
    elif a.cmd == "target":
        try:
            results = load_results(a.section)
        except FileNotFoundError:
            results = {}
        append_targets(a.targets, [target(a.description, results, a.value_key, a.value_name,
                                          a.ref_key, a.ref_name, a.bound, a.beside)])
    elif a.cmd == "miss":
        append_targets(a.targets, [f"MISS {a.description}: not measured"])
    elif a.cmd == "targets":
        with open(a.file, encoding="utf-8") as f:
            emit(["", "### Targets", ""] + f.read().splitlines())
    elif a.cmd == "memory":
        emit(memory(read_samples(a.samples), a.binary))
    elif a.cmd == "header":
        emit(header(a.mode, a.load))
    elif a.cmd == "syscalls":
        emit(syscalls(a.label, a.trace, a.summary))
    elif a.cmd == "perf":
        emit(perf(a.label, a.launches, a.by_comm, a.by_dso, a.by_symbol))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
