#!/usr/bin/env bash
# The cost of package signature checking in `realize`: N generated
# packages (each a few files of ~40 KB), signed with an RSA 4096 key by
# `rpmsign --addsign`, realized into a fresh store with and without
# `gpgcheck`, R times each (alternating). Prints wall-clock and CPU seconds
# of each run, the best of each setting and the ratio; before them, the
# time of the first `eval` of each spec (gpgcheck makes it read signers).
# With N=example: the bundled example (examples/cernvm, branch production,
# 50 RPMs) with its packages signed the same way.
# Usage: bench/gpgcheck.sh [N=300|example] [R=3] [CVMBUILD=target/debug/cvmbuild]
set -euo pipefail
n=${1:-300}
rounds=${2:-3}
bin=$(realpath "${3:-target/debug/cvmbuild}")
work=$(mktemp -d /tmp/gpgbench.XXXXXX)
export GNUPGHOME=$work/g
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill gpg-agent; rm -rf "$work"' EXIT
# A private copy: a rebuild during the run cannot swap the binary.
cp "$bin" "$work/cvmbuild"
bin=$work/cvmbuild
gpg --batch --quiet --passphrase '' --quick-gen-key 'Bench <bench@test.invalid>' rsa4096 sign never
gpg --batch --export --armor bench@test.invalid > "$work/key.asc"

# realize SPEC_WITHOUT_SUFFIX EXTRA_ARGS...: R alternating timed runs, then
# the best of each (the least disturbed by other load) and their ratio.
measure() {
  local base=$1
  shift
  local times=$work/times
  : > "$times"
  for r in $(seq 1 "$rounds"); do
    for check in true false; do
      rm -rf "$work/store"
      # Wall clock and CPU (user + system) of the realize: on a shared
      # machine the CPU time is the steadier figure.
      TIMEFORMAT="%R %U %S"
      { time "$bin" realize "$base$check.cvm" --store "$work/store" "$@" >/dev/null 2>&1; } 2> "$work/t"
      read -r wall user sys < "$work/t"
      echo "round $r gpgcheck=$check: wall $wall s, user $user s, sys $sys s"
      echo "$check $wall $user $sys" >> "$times"
    done
  done
  awk '
    { w = $2; c = $3 + $4
      if (!($1 in bw) || w < bw[$1]) bw[$1] = w
      if (!($1 in bc) || c < bc[$1]) bc[$1] = c }
    END {
      printf "best of %d: gpgcheck=false wall %.2f s, cpu %.2f s; gpgcheck=true wall %.2f s, cpu %.2f s\n", NR / 2, bw["false"], bc["false"], bw["true"], bc["true"]
      printf "ratio with/without gpgcheck: wall %.3fx, cpu %.3fx\n", bw["true"] / bw["false"], bc["true"] / bc["false"]
    }' "$times"
}

# pin SPEC EXTRA_ARGS...: the first eval, which solves and writes the lock;
# with gpgcheck it also reads each package's signature header for the
# lock's `signer`s. Timed: that read is the eval-side cost of gpgcheck.
pin() {
  TIMEFORMAT="eval (fresh lock) $(basename "$1"): wall %R s, user %U s, sys %S s"
  time "$bin" eval "$@" >/dev/null 2>&1
}

if [ "$n" = example ]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  cp -r "$here/examples" "$work/ex"
  rpmsign --addsign --define '_gpg_name bench@test.invalid' --define '__gpg /usr/bin/gpg' \
    "$work"/ex/repos/*/Packages/*.rpm >/dev/null 2>&1
  for repo in sl6 cernvm; do
    createrepo_c --quiet --simple-md-filenames --revision 1 --set-timestamp-to-revision "$work/ex/repos/$repo"
  done
  for check in true false; do
    sed -e "s|url = \"../repos/sl6\"|&, gpgkey = \"$work/key.asc\", gpgcheck = $check|" \
        -e "s|url = \"../repos/cernvm\"|&, gpgkey = \"$work/key.asc\", gpgcheck = $check|" \
        "$work/ex/cernvm/cernvm.cvm" > "$work/ex/cernvm/$check.cvm"
    grep -q "gpgcheck = $check" "$work/ex/cernvm/$check.cvm"
    pin "$work/ex/cernvm/$check.cvm" --branch production
  done
  echo "bundled example: $(ls "$work"/ex/repos/*/Packages/*.rpm | wc -l) signed RPMs"
  measure "$work/ex/cernvm/" --branch production
  exit 0
fi

mkdir -p "$work/repo" "$work/top"
names=()
for i in $(seq 1 "$n"); do
  name=pkg$i
  names+=("\"$name\"")
  cat > "$work/top/$name.spec" <<SPEC
Name: $name
Version: 1.0
Release: 1
Summary: bench package
License: MIT
BuildArch: noarch
AutoReqProv: no
%description
bench
%install
mkdir -p %{buildroot}/usr/share/$name
for f in a b c d; do head -c 10240 /dev/urandom | base64 > %{buildroot}/usr/share/$name/\$f; done
%files
/usr/share/$name
SPEC
  rpmbuild -bb --quiet --define "_topdir $work/top" --define "_rpmdir $work/repo" \
    --define '_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm' \
    --define '__os_install_post %{nil}' "$work/top/$name.spec" >/dev/null 2>&1
done
rpmsign --addsign --define '_gpg_name bench@test.invalid' --define '__gpg /usr/bin/gpg' \
  "$work"/repo/*.rpm >/dev/null 2>&1
createrepo_c --quiet --no-database "$work/repo"
list=$(IFS=,; echo "${names[*]}")
for check in true false; do
  cat > "$work/$check.cvm" <<SPEC
let r = repo { name = "bench", url = "repo", gpgkey = ./key.asc, gpgcheck = $check }
branch main = release { name = "bench" version = "1.0" arch = "x86_64" repos = [r] packages = [$list] }
SPEC
  pin "$work/$check.cvm"
done
echo "packages: $n, $(du -sb "$work/repo" | cut -f1) bytes of RPMs"
measure "$work/"
