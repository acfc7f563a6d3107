#!/bin/sh
# Initial ramdisk /init for the example image: mount the pseudo file
# systems, say which release and branch booted (the image puts them on the
# kernel command line), and power off. examples/boot/init.sh is the
# full version that overlays the OS tree and switches root into it.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for a in $(cat /proc/cmdline); do
  case "$a" in
    cvmbuild.release=*) rel=${a#*=} ;;
    cvmbuild.branch=*) br=${a#*=} ;;
  esac
done
echo "cvmbuild-boot: release=$rel branch=$br modules=$(cut -d' ' -f1 /proc/modules | sort | tr '\n' ',')"
poweroff -f
