"""``wsseg bench``: every benchmark, the reliability campaign, speed measurements and sweeps."""
