#!/bin/sh
# /init of the test guests (tests/vm/guests.ts builds it into the initramfs with a static busybox and
# the kernel modules listed in /lib/modules/modules.order). It turns a bare kernel into a machine that
# runs the project from the host: the host's root read-only over virtio-9p (tag `hostroot`) as the
# guest's root, with the guest's own /proc, /sys, /dev, /dev/shm, /tmp and /run on top, a writable
# 9p share (tag `share`) at the same path as on the host, a loopback and, if asked, an address on the
# test's link. Then it runs `<share>/guest-<name>.sh` with the host's /bin/sh, records its exit status
# in `<share>/guest-<name>.exit` and powers off. Nothing inside the guest is configured by hand: the
# ivshmem device, if any, is left to vmcomm's PCI scan.
#
# Kernel command-line parameters (dotted, so the kernel keeps them out of init's environment):
#   vmcomm.name=NAME     the guest's name (hostname, script and log names)
#   vmcomm.share=PATH    where the writable share is mounted (the host's path of the shared directory)
#   vmcomm.keep=P1,P2    host paths under /tmp or /run that must stay visible above the guest's own
#   vmcomm.addr=A/N      an IPv4 address for eth0 (omitted: no network but the loopback)
#
# Every step that fails prints `vmcomm-guest[NAME] … FAILED: …` on the console and powers off, so the
# host never waits on a guest that cannot go on; the kernel's panic=-1 covers an init that dies.
PATH=/bin
export PATH
/bin/busybox --install -s /bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec >/dev/console 2>&1

param() {
  for word in $(cat /proc/cmdline); do
    case "$word" in "$1="*) echo "${word#*=}"; return 0 ;; esac
  done
}
NAME=$(param vmcomm.name)
SHARE=$(param vmcomm.share)
KEEP=$(param vmcomm.keep)
ADDR=$(param vmcomm.addr)

say() { echo "vmcomm-guest[$NAME] $(cut -d' ' -f1 /proc/uptime)s: $*"; }
fail() {
  say "FAILED: $*"
  sync
  poweroff -f
  sleep 60
}
[ -n "$NAME" ] && [ -n "$SHARE" ] || fail "vmcomm.name and vmcomm.share must be on the kernel command line"
hostname "$NAME"
say "kernel up"

for module in $(cat /lib/modules/modules.order); do
  insmod "/lib/modules/$module" || fail "insmod $module"
done

# msize: 9p's largest message; the default (8 KiB) makes reading node and node_modules slow.
# cache=loose on the read-only root: nothing on the host changes under a running guest.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /newroot || fail "mount the host's root (9p tag hostroot)"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share /share || fail "mount the share (9p tag share)"

R=/newroot
mount -t proc proc $R/proc || fail "mount /proc"
mount -t sysfs sysfs $R/sys || fail "mount /sys"
mount -t devtmpfs devtmpfs $R/dev || fail "mount /dev"
mkdir -p $R/dev/shm $R/dev/pts
mount -t devpts devpts $R/dev/pts
# The guest's own shared memory: vmcomm's shm backend between two ranks of this guest.
mount -t tmpfs -o mode=1777 shm $R/dev/shm || fail "mount /dev/shm"
# Keep the host's /tmp and /run reachable (a CI checkout may live there), then give the guest its own.
mount --bind $R/tmp /hosttmp || fail "bind the host's /tmp"
mount --bind $R/run /hostrun || fail "bind the host's /run"
mount -t tmpfs -o mode=1777 tmp $R/tmp || fail "mount /tmp"
mount -t tmpfs -o mode=755 run $R/run || fail "mount /run"
for path in $(echo "$KEEP" | tr ',' ' '); do
  case "$path" in
    /tmp/* | /run/*)
      mkdir -p "$R$path" && mount --bind "/host${path#/}" "$R$path" || fail "keep $path visible"
      ;;
  esac
done
[ -d "$R$SHARE" ] || mkdir -p "$R$SHARE" || fail "make the mount point $SHARE"
mount --bind /share "$R$SHARE" || fail "mount the share at $SHARE"

ip link set lo up || fail "bring up the loopback"
if [ -n "$ADDR" ]; then
  ip addr add "$ADDR" dev eth0 || fail "add $ADDR to eth0"
  ip link set eth0 up || fail "bring up eth0"
fi

say "running $SHARE/guest-$NAME.sh"
chroot $R /usr/bin/env -i HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin LANG=C.UTF-8 \
  /bin/sh "$SHARE/guest-$NAME.sh" >"/share/guest-$NAME.log" 2>&1
status=$?
echo "$status" >"/share/guest-$NAME.exit"
say "exit $status"
sync
umount /share 2>/dev/null
poweroff -f
sleep 60
