# Sourced by the scripts: shared build settings.
# A target directory outside the clone is reused when present (CI clones afresh each run;
# the dependency build is the expensive part and does not change between clones).
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d /var/tmp/madang-target ]; then
    export CARGO_TARGET_DIR=/var/tmp/madang-target
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
