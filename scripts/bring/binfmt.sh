#!/usr/bin/env bash
# binfmt.sh up|down DIR: let the kernel run linux/arm64 binaries under qemu-aarch64-static (flag F),
# so that arm64 containers run, for the end-to-end tests (e2e/harness.BringUp). up mounts
# binfmt_misc if needed and registers the handler unless one for aarch64 is already there; it notes
# in DIR what it did, and down undoes exactly that. Asserts nothing; fails with one line.
set -euo pipefail
BINFMT=/proc/sys/fs/binfmt_misc
NAME=quinistry-aarch64
verb=${1:-} dir=${2:-}
[[ -n $dir ]] || { echo "usage: binfmt.sh up|down DIR" >&2; exit 2; }
mkdir -p "$dir"
case $verb in
  up)
    if [[ ! -e $BINFMT/register ]]; then
      mount -t binfmt_misc binfmt_misc "$BINFMT" || { echo "binfmt.sh: cannot mount binfmt_misc" >&2; exit 1; }
      touch "$dir/binfmt.mounted"
    fi
    # an aarch64 handler is already there (binfmt-support's, say): use it, never remove it
    if ! grep -qs '^magic 7f454c460201010000000000000000000200b700' "$BINFMT"/*; then
      # the kernel decodes the \x escapes itself
      printf '%s\n' ":$NAME:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F" \
        >"$BINFMT/register" || { echo "binfmt.sh: cannot register qemu-aarch64-static" >&2; exit 1; }
      touch "$dir/binfmt.registered"
    fi
    ;;
  down)
    if [[ -e $dir/binfmt.registered && -e $BINFMT/$NAME ]]; then echo -1 >"$BINFMT/$NAME"; fi
    rm -f "$dir/binfmt.registered"
    # unmount only what up mounted, and only if nobody has registered anything since
    if [[ -e $dir/binfmt.mounted && $(find "$BINFMT" -mindepth 1 -maxdepth 1 | wc -l) -eq 2 ]]; then umount "$BINFMT"; fi
    rm -f "$dir/binfmt.mounted"
    ;;
  *) echo "usage: binfmt.sh up|down DIR" >&2; exit 2 ;;
esac
