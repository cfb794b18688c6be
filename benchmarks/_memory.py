"""Peak resident memory of this process, for the benchmarks that report it (Linux's
``/proc``; torch's allocations are invisible to tracemalloc)."""

from __future__ import annotations

__all__ = ["proc_status_mib", "reset_peak_rss"]


def proc_status_mib(key: str) -> float | None:
    """A ``/proc/self/status`` field in MiB (``VmRSS``, ``VmHWM``), or None without it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
