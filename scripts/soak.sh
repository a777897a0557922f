#!/usr/bin/env bash
# The soak and abuse runs against one server on loopback, one at a time, with their figures:
#   - 1,000 join/leave cycles: sessions, rooms, tasks and RSS afterwards;
#   - 100 clients in 10 processes, half killed, half frozen (SIGSTOP): time until every
#     session is reaped, RSS with them and after, twice;
#   - 20,000 datagrams/s of random bytes for 10 s at the media port during a 4-party call:
#     pictures kept per pair, datagrams refused, remote addresses before and after;
#   - WebSockets sending junk, oversized and 1,000 messages a second during a call: each
#     closed with its code, the call goes on.
# The same tests run in the normal suite (scripts/test.sh); this prints what they measured.
#
#   scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh --run

printf '== soak: cycles, killed and frozen clients, garbage UDP\n' >&2
cargo test --quiet -p madang --test soak -- --nocapture --test-threads=1
printf '\n== abuse: junk, oversized and flooding WebSockets during a call\n' >&2
cargo test --quiet -p madang --test conference -- --nocapture --exact \
    bad_sessions_are_closed_with_the_right_code_and_the_room_carries_on
