"""Peak resident memory of this process and its finished children (for build reports)."""

import resource


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024.0, 1)   # ru_maxrss is in KiB on Linux
