//! rpm's built-in `<lua>` scriptlets, run by `assemble` inside the
//! sandbox through cvmbuild's embedded Lua, compared with the real rpm
//! (Debian's rpm 4.18 has Lua built in) installing the very same RPM
//! files: a `%pretrans` making directories and links with `posix` in a
//! tree that has no shell at all, a `%post` using `rpm.expand` and
//! `io.open`, one reading `arg`, a failing `%post` (reported, the build
//! goes on), a scriptlet trying to write on the host (it cannot), a
//! failing `%pre` (the build stops, naming package, scriptlet and the Lua
//! error as rpm words it), a Lua loop killed at the time limit, and the
//! fork/exec/execute patterns of distribution scriptlets.

use crate::scriptlets_sandbox::{all_logs, listing, realize, running, spec};
use crate::support::rpmrepo::{build_repo, Pkg, RepoOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A unique host path a scriptlet tries to write (it must not appear).
fn host_marker(tmp: &Path) -> PathBuf {
    tmp.join("lua-host-marker")
}

/// Scriptlet bodies go through rpmbuild's macro expansion: `%%` leaves
/// a `%` for the scriptlet's own `rpm.expand` at install time.
fn packages(tmp: &Path) -> Vec<Pkg> {
    let marker = host_marker(tmp);
    vec![
        Pkg::new("base", "1.0", "1")
            .file("/usr/share/base/readme", b"base\n")
            .script(
                "pretrans -p <lua>",
                r#"posix.mkdir("/usr")
posix.mkdir("/usr/bin")
posix.mkdir("/usr/lib64")
posix.symlink("usr/bin", "/bin")
posix.symlink("usr/lib64", "/lib64")
posix.mkdir("/run")
posix.mkdir("/var")
assert(posix.symlink("../run", "/var/run"))
assert(posix.stat("/var/run", "type") == "link")
assert(posix.readlink("/bin") == "usr/bin")
assert(posix.chmod("/run", "755") == 0)
print("base made the layout")"#,
            ),
        Pkg::new("luapost", "1.0", "1").script(
            "post -p <lua>",
            r#"local path = rpm.expand("%%{_sysconfdir}/luapost.conf")
posix.mkdir(rpm.expand("%%{_sysconfdir}"))
rpm.define("luapost_greeting hello from %%{_datadir}")
local f = assert(io.open(path, "w"))
f:write(rpm.expand("%%{_prefix} %%{_bindir} %%{_libdir} %%{_localstatedir} %%_sbindir %%%%\n"))
f:write(rpm.expand("%%{luapost_greeting} [%%{?nosuch:x}] %%{!?nosuch:unset}\n"))
f:write(tostring(rpm.isdefined("luapost_greeting")), " ", rpm.vercmp("1.0-1", "1.0-2"), " ", rpm.vercmp("2:1", "1:9"), "\n")
f:close()
assert(posix.chmod(path, "640") == 0)
io.write("luapost wrote ", path, "\n")"#,
        ),
        Pkg::new("luaarg", "1.0", "1").script(
            "post -p <lua>",
            r#"posix.mkdir("/var/lib")
posix.mkdir("/var/lib/luaarg")
local f = assert(io.open("/var/lib/luaarg/args", "w"))
f:write(#arg, " ", arg[1], " ", tostring(arg[2]), " ", type(arg[2]), "\n")
local function show(...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  return table.concat(t, " ")
end
f:write(show(posix.mkdir("/run")), "\n", show(rpm.execute("/no/such")), "\n")
f:write(show(posix.stat("/run", "mode")), " ", show(posix.access("/run", "rw")), "\n")
f:close()
if arg[2] == 1 then print("luaarg: fresh install") end
local g = assert(io.open("/var/lib/luaarg/random", "w"))
g:write(math.random(1, 1000000000), "\n")
g:close()
local keys = {}
for i = 1, 40 do keys["key" .. i] = i end
local order = {}
for k in pairs(keys) do order[#order + 1] = k end
local o = assert(io.open("/var/lib/luaarg/order", "w"))
o:write(table.concat(order, " "), "\n")
o:close()"#,
        ),
        Pkg::new("luabadpost", "1.0", "1")
            .file("/usr/share/luabadpost/f", b"f\n")
            .script("post -p <lua>", "print(\"about to fail\")\nerror(\"lua-post-boom\")"),
        Pkg::new("luaescape", "1.0", "1").script(
            "post -p <lua>",
            &format!(
                r#"local host = io.open("{m}", "w")
local exe = io.open("/dev/.cvmbuild-host/cvmbuild", "a")
local f = assert(io.open("/escape-lua", "w"))
f:write(tostring(host ~= nil), " ", tostring(exe ~= nil), "\n")
f:close()"#,
                m = marker.display()
            ),
        ),
    ]
}

fn rpm_install(root: &Path, rpms: &[PathBuf]) -> Output {
    std::fs::create_dir_all(root).unwrap();
    Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm", "-i", "--nodeps"])
        .args(rpms)
        .output()
        .unwrap()
}

fn rpms_in(repo: &Path, names: &[&str]) -> Vec<PathBuf> {
    let mut rpms: Vec<PathBuf> = std::fs::read_dir(repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".rpm") && names.iter().any(|w| n.starts_with(&format!("{w}-")))
        })
        .collect();
    rpms.sort();
    assert_eq!(rpms.len(), names.len(), "{rpms:?}");
    rpms
}

#[test]
fn lua_scriptlets_run_in_the_sandbox_and_match_rpm() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = t.join("repo");
    std::fs::create_dir(&repo).unwrap();
    build_repo(&repo, &packages(t), &RepoOptions::default());
    let names = ["base", "luapost", "luaarg", "luabadpost", "luaescape"];

    let s = spec(t, &names, "");
    let ours = t.join("ours");
    let out = realize(t, &s, &ours);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "realize failed:\n{err}");

    // No shell anywhere: the layout comes from the Lua %pretrans.
    assert!(!ours.join("usr/bin/sh").exists());
    assert_eq!(
        std::fs::read_link(ours.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        std::fs::read_link(ours.join("var/run")).unwrap(),
        Path::new("../run")
    );
    assert_eq!(
        std::fs::read_to_string(ours.join("etc/luapost.conf")).unwrap(),
        "/usr /usr/bin /usr/lib64 /var /usr/sbin %\n\
         hello from /usr/share [] unset\ntrue -1 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(ours.join("var/lib/luaarg/args")).unwrap(),
        "2 <lua> 1 number\n\
         nil /run: File exists 17.0\n\
         nil posix_spawnp: No such file or directory 2.0\n\
         rwxr-xr-x 0.0\n"
    );
    // Neither the host nor the interpreter bound into the sandbox.
    assert_eq!(
        std::fs::read_to_string(ours.join("escape-lua")).unwrap(),
        "false false\n"
    );
    assert!(!host_marker(t).exists(), "the scriptlet wrote on the host");
    let random = std::fs::read_to_string(ours.join("var/lib/luaarg/random")).unwrap();
    assert!(!ours.join("dev").exists() && !ours.join("proc").exists());

    // Output and the failing %post, named, in the build log.
    let logs = all_logs(t);
    for line in [
        "base-1.0-1.noarch %pretrans: base made the layout",
        "luapost-1.0-1.noarch %post: luapost wrote /etc/luapost.conf",
        "luaarg-1.0-1.noarch %post: luaarg: fresh install",
        "luabadpost-1.0-1.noarch %post: about to fail",
        "luabadpost-1.0-1.noarch %post: error: lua script failed: \
         [string \"%post(luabadpost-1.0-1.noarch)\"]:2: lua-post-boom",
        "luabadpost-1.0-1.noarch %post: exited with status 1; continuing",
    ] {
        assert!(logs.contains(line), "log lacks {line:?}:\n{logs}");
    }

    // The peer: rpm itself, its own Lua, the very same RPM files.
    let peer = t.join("peer");
    let st = rpm_install(&peer, &rpms_in(&repo, &names));
    let rpm_err = String::from_utf8_lossy(&st.stderr);
    assert!(
        rpm_err.contains(
            "lua script failed: [string \"%post(luabadpost-1.0-1.noarch)\"]:2: lua-post-boom"
        ),
        "{rpm_err}"
    );
    // rpm's scratch directory for scriptlet files, if it made one.
    let _ = std::fs::remove_dir(peer.join("var/tmp"));
    // rpm seeds `math.random` from the clock, cvmbuild from the epoch;
    // rpm's Lua seeds its string hashes (the order of `pairs()`) from the
    // clock and addresses, cvmbuild's with a constant.
    let mut a = listing(&ours);
    let mut b = listing(&peer);
    for varies in ["var/lib/luaarg/random", "var/lib/luaarg/order"] {
        assert!(a.remove(varies).is_some());
        assert!(b.remove(varies).is_some());
    }
    let only = |x: &std::collections::BTreeMap<String, String>,
                y: &std::collections::BTreeMap<String, String>| {
        x.iter()
            .filter(|(k, v)| y.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
    };
    assert!(
        a == b,
        "trees differ:\nonly/different in ours: {:#?}\nonly/different in rpm's: {:#?}",
        only(&a, &b),
        only(&b, &a)
    );

    // A build from scratch draws the same random number, and the same tree.
    let t2 = tempfile::tempdir().unwrap();
    std::fs::create_dir(t2.path().join("repo")).unwrap();
    crate::support::cli::copy_dir(&repo, &t2.path().join("repo"));
    let s2 = spec(t2.path(), &names, "");
    let ours2 = t2.path().join("ours");
    assert!(realize(t2.path(), &s2, &ours2).status.success());
    assert_eq!(
        std::fs::read_to_string(ours2.join("var/lib/luaarg/random")).unwrap(),
        random
    );
    // ... and visits a table's string keys in the same order.
    assert_eq!(
        std::fs::read_to_string(ours2.join("var/lib/luaarg/order")).unwrap(),
        std::fs::read_to_string(ours.join("var/lib/luaarg/order")).unwrap()
    );
    assert_eq!(listing(&ours), listing(&ours2));
}

#[test]
fn failing_or_hanging_lua_pre_stops_the_build_naming_the_lua_error() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = t.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let mut pkgs = packages(t);
    pkgs.push(
        Pkg::new("luabadpre", "2.0", "1")
            .file("/usr/share/luabadpre/f", b"f\n")
            .script(
                "pre -p <lua>",
                "print(\"checking\")\nerror(\"lua-pre-boom\")",
            ),
    );
    pkgs.push(Pkg::new("luahang", "1.0", "1").script("pre -p <lua>", "while true do end"));
    build_repo(&repo, &pkgs, &RepoOptions::default());

    // A Lua loop is killed at the time limit like any scriptlet, and its
    // interpreter does not outlive the sandbox.
    let s = spec(t, &["luahang"], "");
    let out = crate::support::cvmbuild(t)
        .env("CVMBUILD_SCRIPTLET_TIMEOUT", "2")
        .arg("realize")
        .arg(&s)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("luahang-1.0-1.noarch: %pre scriptlet was killed after the time limit of 2 s"),
        "{err}"
    );
    let left = running("%prein(luahang-1.0-1.noarch)");
    assert!(left.is_empty(), "{left:?}");

    let s = spec(t, &["base", "luabadpre"], "");
    let out = realize(t, &s, &t.join("bad"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "a failing %pre must stop the build");
    assert!(
        err.contains("luabadpre-2.0-1.noarch: %pre scriptlet exited with status 1"),
        "{err}"
    );
    assert!(err.contains("checking"), "{err}");
    // rpm's words for the same failure.
    let lua_err = "lua script failed: [string \"%prein(luabadpre-2.0-1.noarch)\"]:2: lua-pre-boom";
    assert!(err.contains(lua_err), "{err}");
    assert!(!t.join("bad").exists(), "nothing exported");

    let st = rpm_install(&t.join("peer"), &rpms_in(&repo, &["luabadpre"]));
    assert!(!st.status.success());
    let rpm_err = String::from_utf8_lossy(&st.stderr);
    assert!(rpm_err.contains(lua_err), "{rpm_err}");
    assert!(!t.join("peer/usr/share/luabadpre").exists());
}

/// The patterns of real `<lua>` scriptlets (setup's and glibc's `%post`):
/// `posix.fork`/`exec`/`wait` with `redirect2null`, `rpm.execute`,
/// `posix.access` before running a helper, `os.remove`, against rpm.
#[test]
fn fork_exec_and_execute_as_distribution_scriptlets_use_them() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = t.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let mut shell = Pkg::new("shell", "1.0", "1")
        .arch("x86_64")
        .copy("/bin/busybox", "/bin/busybox", 0o755)
        .file("/etc/passwd.rpmnew", b"stale\n")
        .dir("/var/lib/helpers");
    for a in ["sh", "echo", "touch"] {
        shell = shell.symlink(&format!("/bin/{a}"), "busybox");
    }
    let pkgs = vec![
        shell,
        Pkg::new("helpers", "1.0", "1")
            .preamble("Requires(post): shell")
            .script(
                "post -p <lua>",
                r#"local function post_exec(program, ...)
  local pid = posix.fork()
  if pid == 0 then
    posix.redirect2null(2)
    assert(posix.exec(program, ...))
  elseif pid > 0 then
    posix.wait(pid)
  end
end
if posix.access("/bin/busybox", "x") then
  post_exec("/bin/busybox", "sh", "-c", "echo forked $1 > /var/lib/helpers/forked", "sh", "x")
end
if posix.access("/usr/bin/newaliases", "x") then
  post_exec("/usr/bin/newaliases")
end
local r = rpm.execute("/bin/touch", "/var/lib/helpers/executed")
local f = assert(io.open("/var/lib/helpers/results", "w"))
f:write(tostring(r), " ", tostring(rpm.execute("/bin/sh", "-c", "exit 3")), "\n")
f:close()
for _, name in ipairs({"passwd", "shadow"}) do
  os.remove("/etc/" .. name .. ".rpmnew")
end
print("helpers ran")"#,
            ),
    ];
    build_repo(&repo, &pkgs, &RepoOptions::default());

    let s = spec(t, &["shell", "helpers"], "");
    let ours = t.join("ours");
    let out = realize(t, &s, &ours);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "realize failed:\n{err}");
    let helpers = ours.join("var/lib/helpers");
    assert_eq!(
        std::fs::read_to_string(helpers.join("forked")).unwrap(),
        "forked x\n"
    );
    assert!(helpers.join("executed").is_file());
    assert_eq!(
        std::fs::read_to_string(helpers.join("results")).unwrap(),
        "0.0 nil\n"
    );
    assert!(!ours.join("etc/passwd.rpmnew").exists());
    assert!(all_logs(t).contains("helpers-1.0-1.noarch %post: helpers ran"));

    let peer = t.join("peer");
    let st = rpm_install(&peer, &rpms_in(&repo, &["shell", "helpers"]));
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let _ = std::fs::remove_dir(peer.join("var/tmp"));
    assert_eq!(listing(&ours), listing(&peer));
}
