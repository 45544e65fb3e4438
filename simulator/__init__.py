"""The handset farm: the estate's staff as live pjsua2 handsets, and a carrier that plays the public network.

pjsua2 holds at most 8 accounts and 4 calls per process, so the farm is a supervisor
(`supervisor.py`) with many small worker processes (`worker.py`), each inside the network
namespace of the site its handsets belong to. `assignment.py` decides which handsets share
a worker, `profiles.py` how each person behaves, `srv_failover.py` how a handset finds
its PBX node, `events.py` where everything that happens is written, `carrier.py` the public
network's side, and `control.py` the Python API behind `tsunagu farm`.
"""
