#!/usr/bin/env bash
# Rebuilds the example repositories from packages.txt with rpmbuild and
# createrepo_c, byte-for-byte reproducibly (see ../../README.md). The output
# is committed so the examples evaluate offline on a fresh machine; run this
# only after editing packages.txt. Needs: rpm (rpmbuild), createrepo-c.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
epoch=1400000000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rm -rf "$here/sl6" "$here/cernvm"
grep -v '^#' "$here/packages.txt" | grep -v '^$' |
while IFS='|' read -r repo name version release arch requires provides conflicts obsoletes files; do
  spec="$work/$name-$version-$release.spec"
  {
    echo "Name: $name"
    echo "Version: $version"
    echo "Release: $release"
    echo "Summary: cvmbuild example package $name"
    echo "License: MIT"
    echo "BuildArch: $arch"
    IFS=';'
    for d in $requires; do echo "Requires: $d"; done
    for d in $provides; do echo "Provides: $d"; done
    for d in $conflicts; do echo "Conflicts: $d"; done
    for d in $obsoletes; do echo "Obsoletes: $d"; done
    echo "%description"
    echo "A small stand-in for $name, for the cvmbuild examples."
    echo "%install"
    for f in $files; do
      case "$f" in
        */) echo "mkdir -p %{buildroot}$f" ;;
        *'->'*) p=${f%%->*}; t=${f#*->}
                echo "mkdir -p %{buildroot}$(dirname "$p")"; echo "ln -s $t %{buildroot}$p" ;;
        *) echo "mkdir -p %{buildroot}$(dirname "$f")"
           echo "printf '%s\n' '$name $version-$release: $f' > %{buildroot}$f"
           case "$f" in */bin/*|*/sbin/*) echo "chmod 0755 %{buildroot}$f" ;; esac ;;
      esac
    done
    echo "%files"
    for f in $files; do
      case "$f" in
        */) echo "%dir ${f%/}" ;;
        *'->'*) echo "${f%%->*}" ;;
        /etc/*) echo "%config(noreplace) $f" ;;
        *) echo "$f" ;;
      esac
    done
    unset IFS
  } > "$spec"
  mkdir -p "$here/$repo/Packages"
  SOURCE_DATE_EPOCH=$epoch rpmbuild -bb --quiet \
    --define "_topdir $work/top" \
    --define "_rpmdir $here/$repo/Packages" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "_binary_payload w19.zstdio" \
    --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" \
    --define "_buildhost cvmbuild.example" \
    --define "__os_install_post %{nil}" \
    --define "debug_package %{nil}" \
    "$spec"
done
for repo in sl6 cernvm; do
  touch -d "@$epoch" "$here/$repo"/Packages/*.rpm
  createrepo_c --quiet --simple-md-filenames --revision 1 --set-timestamp-to-revision "$here/$repo"
done
echo "built: $(ls "$here"/sl6/Packages "$here"/cernvm/Packages | grep -c '\.rpm$') packages"
