"""Call storms: load the PBX, measure it with RFC 6076 definitions, gate and report the run."""
