#!/usr/bin/env bash
# .ci/v2-vm/run.sh CMD [ARG...]
#
# Runs CMD as root inside a QEMU VM on a real cgroup v2 kernel and exits with
# its exit code (125: the VM reported none). Adapted from the recipe in
# ../shared/tools/berth-v2vm.sh (kept here so a fresh clone has it).
#
# The VM boots Debian's own kernel (linux-image-amd64, unpacked from the
# .deb, not installed) under TCG (this host's /dev/kvm cannot run a stock
# kernel), with qboot, the host's whole root filesystem shared read-only over
# 9p, a tmpfs overlay on top so everything is writable inside, fresh /run,
# and cgroup v2 as the ONLY hierarchy (cgroup_no_v1=all; cgroup2 on
# /sys/fs/cgroup with +cpu +cpuset +io +memory +pids enabled at the root).
# CMD runs in the root cgroup in the current directory; /tmp is an ext4
# filesystem on a virtio disk when V2VM_TMP_DISK is set (blkio throttling
# needs a block device), else a tmpfs.
#
# Knobs: V2VM_DIR (cache: kernel, initramfs; default /var/tmp/berth-v2vm),
#   V2VM_MEM (4G), V2VM_CPUS (2), V2VM_TIMEOUT (seconds for the whole run,
#   900), V2VM_ENV="VAR ..." (extra variables to pass in), V2VM_RW="dir ..."
#   (directories shared read-write at the same path; default none),
#   V2VM_TMP_DISK=SIZE (e.g. 4G), V2VM_KMSG=1 (kernel messages on the console).
set -euo pipefail

V2VM_DIR=${V2VM_DIR:-/var/tmp/berth-v2vm}
MEM=${V2VM_MEM:-4G}
CPUS=${V2VM_CPUS:-2}
VM_TIMEOUT=${V2VM_TIMEOUT:-900}
RW_DIRS=${V2VM_RW:-}

if [ $# -eq 0 ]; then echo "usage: $0 CMD [ARG...]" >&2; exit 2; fi
[ "$(id -u)" = 0 ] || { echo "berth-v2vm: must run as root" >&2; exit 2; }
log() { echo "berth-v2vm: $*" >&2; }

# ---------------------------------------------------------------- setup (cached)
mkdir -p "$V2VM_DIR"
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
  || need_pkgs+=(busybox-static)
if [ ${#need_pkgs[@]} -gt 0 ] || [ ! -f "$V2VM_DIR/kernel.ok" ]; then
  apt-get update -qq >/dev/null
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need_pkgs[@]}" >/dev/null
fi
BUSYBOX=/bin/busybox

if [ ! -f "$V2VM_DIR/kernel.ok" ]; then
  # Debian's current 6.1 kernel, unpacked (not installed: no /boot, no hooks).
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  log "fetching $pkg"
  rm -rf "$V2VM_DIR/kernel" "$V2VM_DIR/dl"; mkdir -p "$V2VM_DIR/kernel" "$V2VM_DIR/dl"
  (cd "$V2VM_DIR/dl" && apt-get download -q "$pkg" >/dev/null 2>&1)
  dpkg-deb -x "$V2VM_DIR"/dl/"$pkg"_*.deb "$V2VM_DIR/kernel"
  rm -rf "$V2VM_DIR/dl"
  kver=$(ls "$V2VM_DIR/kernel/lib/modules")
  $BUSYBOX depmod -b "$V2VM_DIR/kernel" "$kver"
  echo "$kver" > "$V2VM_DIR/kernel.ok"
fi
KVER=$(cat "$V2VM_DIR/kernel.ok")
KDIR=$V2VM_DIR/kernel
MODDIR=$KDIR/lib/modules/$KVER

INITRD=$V2VM_DIR/initrd-$KVER.cpio.gz
SELF_SUM=$(sha256sum "$0" | cut -c1-16)
if [ ! -f "$INITRD" ] || [ "$(cat "$INITRD.sum" 2>/dev/null)" != "$SELF_SUM" ]; then
  log "building initramfs"
  ir=$(mktemp -d "$V2VM_DIR/ir.XXXXXX")
  mkdir -p "$ir"/{bin,dev,proc,sys,lower,rw,newroot,mods}
  cp "$BUSYBOX" "$ir/bin/busybox"
  # load order resolved by hand from modules.dep
  for m in drivers/virtio/virtio_ring drivers/virtio/virtio \
           drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev \
           drivers/virtio/virtio_pci net/9p/9pnet net/9p/9pnet_virtio \
           fs/netfs/netfs fs/fscache/fscache fs/9p/9p fs/overlayfs/overlay; do
    cp "$MODDIR/kernel/$m.ko" "$ir/mods/"
    echo "$(basename "$m").ko" >> "$ir/mods/order"
  done
  # ---- stage 1: /init in the initramfs
  cat > "$ir/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m || echo "v2vm: insmod $m failed"; done
fail() { echo "v2vm: $*"; sleep 1; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose hostroot /lower \
  || fail "mount hostroot failed"
mount -t tmpfs -o mode=755 rw /rw && mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
  || fail "overlay mount failed"
mount -t tmpfs -o mode=755,nosuid,nodev run /newroot/run
mkdir -p /newroot/run/v2vm/ctl
cp /bin/busybox /stage2 /newroot/run/v2vm/
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,rw ctl /newroot/run/v2vm/ctl \
  || fail "mount ctl failed"
mkdir -p /newroot/lib/modules/KVER
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose modules /newroot/lib/modules/KVER \
  || echo "v2vm: mount modules failed"
umount /proc /sys; umount /dev 2>/dev/null
exec switch_root /newroot /run/v2vm/busybox sh /run/v2vm/stage2
EOF
  sed -i "s|KVER|$KVER|g" "$ir/init"; chmod 755 "$ir/init"
  # ---- stage 2: pid 1 in the overlaid host root
  cat > "$ir/stage2" <<'EOF'
B=/run/v2vm/busybox
C=/run/v2vm/ctl
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs dev /dev
$B mkdir -p /dev/pts /dev/shm /dev/mqueue
$B mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
$B mount -t tmpfs -o nosuid,nodev shm /dev/shm
$B mount -t mqueue mqueue /dev/mqueue 2>/dev/null
# the kernel's own module requests (crc32c for ext4, veth, xfs...) via busybox
$B ln -s busybox /run/v2vm/modprobe && echo /run/v2vm/modprobe > /proc/sys/kernel/modprobe
$B modprobe loop 2>/dev/null
if [ -f $C/tmpdisk ]; then
  $B modprobe virtio_blk; $B modprobe ext4
  i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do $B sleep 0.1; i=$((i+1)); done
  $B mount -t ext4 /dev/vda /tmp && $B chmod 1777 /tmp || echo "v2vm: mounting /dev/vda on /tmp failed"
fi
$B grep -q " /tmp " /proc/mounts || $B mount -t tmpfs -o mode=1777,nosuid,nodev tmp /tmp
$B mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
echo "+cpu +cpuset +io +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control \
  || echo "v2vm: enabling controllers failed"
$B ip link set lo up 2>/dev/null
$B hostname v2vm
i=0
for d in $($B cat $C/rwdirs); do
  $B mkdir -p "$d" && $B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,rw rw$i "$d" \
    || echo "v2vm: mount rw$i at $d failed"
  i=$((i+1))
done
[ -f $C/kmsg ] || echo 1 > /proc/sys/kernel/printk
$B stty -F /dev/console -onlcr 2>/dev/null
# output through a pipe, so the command does not see a tty
{ /bin/sh $C/cmd.sh < /dev/null; echo $? > $C/rc; } 2>&1 | $B cat > /dev/console
$B dmesg > $C/dmesg 2>/dev/null
$B sync
[ -f $C/kmsg ] || echo 0 > /proc/sys/kernel/printk
$B poweroff -f
echo o > /proc/sysrq-trigger
EOF
  (cd "$ir" && find . | $BUSYBOX cpio -o -H newc 2>/dev/null | gzip -1) > "$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"; echo "$SELF_SUM" > "$INITRD.sum"
  rm -rf "$ir"
fi

# ---------------------------------------------------------------- per run
CTL=$(mktemp -d "$V2VM_DIR/run.XXXXXX")
trap 'rm -rf "$CTL"' EXIT
{
  echo "#!/bin/sh"
  echo "export PATH=$(printf %q "$PATH") HOME=/root TERM=dumb USER=root LOGNAME=root"
  for v in RUST_BACKTRACE RUST_LOG CI BERTH_SKIP_LOG RUST_TEST_THREADS ${V2VM_ENV:-}; do
    [ -n "${!v+x}" ] && echo "export $v=$(printf %q "${!v}")"
  done
  echo "cd $(printf %q "$PWD") || exit 126"
  printf 'exec'; printf ' %q' "$@"; echo
} > "$CTL/cmd.sh"
: > "$CTL/rwdirs"
[ -n "${V2VM_KMSG:-}" ] && touch "$CTL/kmsg"
share=(-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
       -virtfs "local,path=$CTL,mount_tag=ctl,security_model=none"
       -virtfs "local,path=$MODDIR,mount_tag=modules,security_model=none,readonly=on")
i=0
for d in $RW_DIRS; do
  d=$(realpath "$d")
  echo "$d" >> "$CTL/rwdirs"
  share+=(-virtfs "local,path=$d,mount_tag=rw$i,security_model=none,multidevs=remap")
  i=$((i+1))
done

disk=()
if [ -n "${V2VM_TMP_DISK:-}" ]; then
  command -v mkfs.ext4 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq e2fsprogs >/dev/null
  truncate -s "$V2VM_TMP_DISK" "$CTL.img"
  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$CTL.img"
  trap 'rm -rf "$CTL" "$CTL.img"' EXIT
  touch "$CTL/tmpdisk"
  disk=(-drive "file=$CTL.img,if=virtio,format=raw,cache=unsafe")
fi

accel_opts=(-accel tcg,thread=multi)
set +e
timeout --foreground -k 5 "$VM_TIMEOUT" qemu-system-x86_64 \
  "${accel_opts[@]}" -machine pc -smp "$CPUS" -m "$MEM" \
  -bios /usr/share/qemu/qboot.rom -nodefaults -no-user-config -no-reboot \
  -display none -serial stdio -monitor none -nic none \
  -kernel "$KDIR/boot/vmlinuz-$KVER" -initrd "$INITRD" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all rdinit=/init" \
  "${share[@]}" "${disk[@]}" < /dev/null
qrc=$?
set -e
if [ -f "$CTL/rc" ]; then
  exit "$(cat "$CTL/rc")"
fi
log "VM ended without an exit code (qemu rc=$qrc); kernel log follows if any"
[ -f "$CTL/dmesg" ] && tail -30 "$CTL/dmesg" >&2
exit 125
