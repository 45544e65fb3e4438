"""Run tasks inside a lab host's network namespace.

Lab hosts are network namespaces on one machine that share its filesystem, so
files move as local copies and only commands need entering the namespace.
`ip netns exec` also bind-mounts /etc/netns/<name>/* over /etc, which gives each
lab host its own hostname and resolv.conf.
"""

from __future__ import annotations

import shlex

from ansible.plugins.connection.local import Connection as LocalConnection

DOCUMENTATION = """
name: tsunagu_netns
short_description: execute on a Tsunagu lab host (a network namespace on this machine)
description:
  - Runs each command through C(ip netns exec) in the host's namespace; file
    transfers are local copies because lab hosts share the controller's filesystem.
author: Tsunagu
options:
  netns:
    description: The network namespace that is this lab host.
    type: str
    required: true
    vars:
      - name: tsunagu_netns
"""


class Connection(LocalConnection):
    transport = "tsunagu_netns"

    def exec_command(self, cmd, in_data=None, sudoable=True):
        namespace = self.get_option("netns")
        return super().exec_command(f"ip netns exec {shlex.quote(namespace)} {cmd}", in_data, sudoable)
