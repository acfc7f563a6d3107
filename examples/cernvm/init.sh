#!/bin/sh
# Initial ramdisk /init for the example image: mount the pseudo file
# systems, say which release and branch booted, and power off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "cvmbuild-boot: $(cat /etc/cvmbuild-release) modules=$(cut -d' ' -f1 /proc/modules | sort | tr '\n' ',')"
poweroff -f
