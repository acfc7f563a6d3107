//! The `posix` module rpm gives Lua scriptlets (rpm's `lposix`): thin
//! calls into the C library with lposix's conventions, which packages'
//! scriptlets test for. A call that fails returns `nil`, the error's
//! text and its errno; one that succeeds returns `0` (or its value).
//! Numbers are Lua floats (`0.0`), as lposix pushes them.
//! Modes are strings (`"755"`, `"u+x,go-w"`, `stat`'s `"rwxr-xr-x"`).
//! User and group names are looked up in the tree's own `/etc/passwd`
//! and `/etc/group` (the sandbox's `/`), never through the host's NSS.

use std::ffi::CString;

use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Result, Table, Value, Variadic};

fn cstr(s: &[u8]) -> Result<CString> {
    CString::new(s).map_err(|_| mlua::Error::runtime("string contains a NUL byte"))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// lposix's `pusherror`: `nil, "info: text", errno`.
pub(super) fn error(lua: &Lua, info: Option<&str>, code: i32) -> Result<MultiValue> {
    let text = std::io::Error::from_raw_os_error(code).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let text = match info {
        Some(i) => format!("{i}: {text}"),
        None => text,
    };
    (Value::Nil, text, f64::from(code)).into_lua_multi(lua)
}

/// lposix's `pushresult`: the value, or the error when it is -1.
fn result(lua: &Lua, r: i64, info: Option<&str>) -> Result<MultiValue> {
    if r == -1 {
        error(lua, info, errno())
    } else {
        (r as f64).into_lua_multi(lua)
    }
}

/// Parses an octal (`"755"`) or symbolic (`"u=rwx,go+rx"`, `"rwxr-xr-x"`)
/// mode, relative to `current` for symbolic changes.
pub(super) fn parse_mode(s: &str, current: u32) -> Option<u32> {
    if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777);
    }
    let b = s.as_bytes();
    if b.len() == 9 && b.iter().all(|c| b"rwxsStT-".contains(c)) {
        let mut m = 0;
        for (i, &c) in b.iter().enumerate() {
            let bit = 1 << (8 - i);
            let set = match (i % 3, c) {
                (_, b'-') => false,
                (0, b'r') | (1, b'w') | (2, b'x') => true,
                (2, b's' | b't') => {
                    m |= [0o4000, 0o2000, 0o1000][i / 3];
                    true
                }
                (2, b'S' | b'T') => {
                    m |= [0o4000, 0o2000, 0o1000][i / 3];
                    false
                }
                _ => return None,
            };
            if set {
                m |= bit;
            }
        }
        return Some(m);
    }
    let mut mode = current;
    for clause in s.split(',') {
        let op_at = clause.find(['+', '-', '='])?;
        let (who, rest) = clause.split_at(op_at);
        let mut mask = 0;
        for w in who.chars() {
            mask |= match w {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o1007,
                'a' => 0o7777,
                _ => return None,
            };
        }
        if who.is_empty() {
            mask = 0o7777;
        }
        let op = rest.as_bytes()[0];
        let mut bits = 0;
        for p in rest[1..].chars() {
            bits |= match p {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                's' => 0o6000,
                't' => 0o1000,
                _ => return None,
            };
        }
        bits &= mask;
        mode = match op {
            b'+' => mode | bits,
            b'-' => mode & !bits,
            _ => (mode & !mask) | bits,
        };
    }
    Some(mode)
}

/// `"rwxr-xr-x"` for the permission bits of `mode`.
pub(super) fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        let on = mode & (1 << (8 - i)) != 0;
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (special, on, i) {
            (true, true, 8) => 't',
            (true, false, 8) => 'T',
            (true, true, _) => 's',
            (true, false, _) => 'S',
            (false, true, _) => c,
            (false, false, _) => '-',
        });
    }
    s
}

/// An id by number or by name in the tree's `/etc/passwd` or
/// `/etc/group`; -1 (leave unchanged) for `nil` or an unknown name.
fn id(v: &Value, db: &str) -> Result<libc::c_long> {
    Ok(match v {
        Value::Nil => -1,
        Value::Integer(n) => *n as libc::c_long,
        Value::Number(n) => *n as libc::c_long,
        Value::String(s) => {
            let name = s.to_str()?.to_string();
            if let Ok(n) = name.parse() {
                return Ok(n);
            }
            let text = std::fs::read_to_string(db).unwrap_or_default();
            text.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.first() == Some(&name.as_str()))
                .and_then(|f| f.get(2).and_then(|i| i.parse().ok()))
                .unwrap_or(-1)
        }
        _ => return Err(mlua::Error::runtime("bad user or group id")),
    })
}

fn names(path: &[u8]) -> std::io::Result<Vec<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::OsStr::from_bytes(path);
    let mut v = vec![b".".to_vec(), b"..".to_vec()];
    for e in std::fs::read_dir(path)? {
        v.push(e?.file_name().as_bytes().to_vec());
    }
    Ok(v)
}

fn io_error(lua: &Lua, path: &[u8], e: std::io::Error) -> Result<MultiValue> {
    error(
        lua,
        Some(&String::from_utf8_lossy(path)),
        e.raw_os_error().unwrap_or(libc::EIO),
    )
}

/// `posix.exec(path, args...)` and `rpm`'s use of it: replaces the
/// process; returns only on failure.
fn exec(lua: &Lua, path: &[u8], args: &[mlua::LuaString]) -> Result<MultiValue> {
    let prog = cstr(path)?;
    let mut argv = vec![prog.clone()];
    for a in args {
        argv.push(cstr(&a.as_bytes())?);
    }
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: flushing every C stream has no preconditions.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    // SAFETY: `prog` and every pointer in `ptrs` point into `argv`'s
    // NUL-terminated strings, alive across the call; `ptrs` ends in NULL.
    unsafe { libc::execv(prog.as_ptr(), ptrs.as_ptr()) };
    error(lua, Some(&String::from_utf8_lossy(path)), errno())
}

/// `redirect2null(fd)`: points `fd` at `/dev/null`.
pub(super) fn redirect2null(lua: &Lua, fd: i32) -> Result<MultiValue> {
    // SAFETY: a valid NUL-terminated path; the descriptors are plain ints.
    let r = unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null < 0 {
            -1
        } else {
            let r = libc::dup2(null, fd);
            if null != fd {
                libc::close(null);
            }
            r
        }
    };
    result(lua, i64::from(r), None)
}

fn stat_table(lua: &Lua, st: &libc::stat) -> Result<Table> {
    let t = lua.create_table()?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "regular",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "link",
        libc::S_IFSOCK => "socket",
        libc::S_IFIFO => "fifo",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        _ => "?",
    };
    t.set("mode", mode_string(st.st_mode))?;
    t.set("ino", st.st_ino as f64)?;
    t.set("dev", st.st_dev as f64)?;
    t.set("nlink", st.st_nlink as f64)?;
    t.set("uid", f64::from(st.st_uid))?;
    t.set("gid", f64::from(st.st_gid))?;
    t.set("size", st.st_size as f64)?;
    t.set("atime", st.st_atime as f64)?;
    t.set("mtime", st.st_mtime as f64)?;
    t.set("ctime", st.st_ctime as f64)?;
    t.set("type", kind)?;
    Ok(t)
}

fn add<A, R, F>(lua: &Lua, t: &Table, name: &str, f: F) -> Result<()>
where
    A: mlua::FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> Result<R> + 'static,
{
    t.set(name, lua.create_function(f)?)
}

type Bytes = mlua::LuaString;

/// The `posix` table.
pub(super) fn module(lua: &Lua) -> Result<Table> {
    let t = lua.create_table()?;
    add(lua, &t, "access", |lua, (p, m): (Bytes, Option<String>)| {
        let mut mode = 0;
        for c in m.as_deref().unwrap_or("f").chars() {
            mode |= match c {
                'r' => libc::R_OK,
                'w' => libc::W_OK,
                'x' => libc::X_OK,
                'f' => libc::F_OK,
                ' ' => 0,
                _ => return Err(mlua::Error::runtime(format!("bad access mode {c:?}"))),
            };
        }
        let c = cstr(&p.as_bytes())?;
        // SAFETY: a NUL-terminated path.
        let r = unsafe { libc::access(c.as_ptr(), mode) };
        result(lua, r.into(), Some(&p.to_string_lossy()))
    })?;
    add(lua, &t, "chdir", |lua, p: Bytes| {
        let c = cstr(&p.as_bytes())?;
        // SAFETY: a NUL-terminated path.
        let r = unsafe { libc::chdir(c.as_ptr()) };
        result(lua, r.into(), Some(&p.to_string_lossy()))
    })?;
    add(lua, &t, "chmod", |lua, (p, m): (Bytes, String)| {
        let c = cstr(&p.as_bytes())?;
        // SAFETY: a NUL-terminated path and a stat buffer of the right type.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::stat(c.as_ptr(), &mut st) } == -1 {
            return error(lua, Some(&p.to_string_lossy()), errno());
        }
        let mode = parse_mode(&m, st.st_mode & 0o7777)
            .ok_or_else(|| mlua::Error::runtime(format!("bad mode {m:?}")))?;
        // SAFETY: a NUL-terminated path.
        let r = unsafe { libc::chmod(c.as_ptr(), mode) };
        result(lua, r.into(), Some(&p.to_string_lossy()))
    })?;
    add(lua, &t, "chown", |lua, (p, u, g): (Bytes, Value, Value)| {
        let c = cstr(&p.as_bytes())?;
        let (u, g) = (id(&u, "/etc/passwd")?, id(&g, "/etc/group")?);
        // SAFETY: a NUL-terminated path; -1 leaves an id unchanged.
        let r = unsafe { libc::chown(c.as_ptr(), u as libc::uid_t, g as libc::gid_t) };
        result(lua, r.into(), Some(&p.to_string_lossy()))
    })?;
    add(lua, &t, "dir", |lua, p: Option<Bytes>| {
        let p = p.map_or(b".".to_vec(), |p| p.as_bytes().to_vec());
        match names(&p) {
            Ok(v) => {
                let t = lua.create_table()?;
                for (i, n) in v.into_iter().enumerate() {
                    t.raw_seti(i + 1, lua.create_string(n)?)?;
                }
                t.into_lua_multi(lua)
            }
            Err(e) => io_error(lua, &p, e),
        }
    })?;
    add(lua, &t, "files", |lua, p: Option<Bytes>| {
        let p = p.map_or(b".".to_vec(), |p| p.as_bytes().to_vec());
        let v = match names(&p) {
            Ok(v) => v,
            Err(e) => {
                return Err(mlua::Error::runtime(format!(
                    "{}: {e}",
                    String::from_utf8_lossy(&p)
                )))
            }
        };
        let mut it = v.into_iter();
        let next: Function = lua.create_function_mut(move |lua, ()| match it.next() {
            Some(n) => Ok(Value::String(lua.create_string(n)?)),
            None => Ok(Value::Nil),
        })?;
        Ok(next)
    })?;
    add(lua, &t, "errno", |lua, ()| {
        let e = errno();
        let text = error(lua, None, e)?.into_iter().nth(1);
        (text, f64::from(e)).into_lua_multi(lua)
    })?;
    add(
        lua,
        &t,
        "exec",
        |lua, (p, args): (Bytes, Variadic<Bytes>)| exec(lua, &p.as_bytes(), &args),
    )?;
    add(lua, &t, "fork", |lua, ()| {
        // SAFETY: flushing every C stream has no preconditions.
        unsafe { libc::fflush(std::ptr::null_mut()) };
        // SAFETY: this process is single-threaded (the hidden mode starts
        // no threads), so the child may go on running Lua.
        let r = unsafe { libc::fork() };
        result(lua, r.into(), None)
    })?;
    add(lua, &t, "wait", |lua, pid: Option<i32>| {
        // SAFETY: waitpid with a NULL status pointer.
        let r = unsafe { libc::waitpid(pid.unwrap_or(-1), std::ptr::null_mut(), 0) };
        result(lua, r.into(), None)
    })?;
    add(lua, &t, "kill", |lua, (pid, sig): (i32, Option<i32>)| {
        // SAFETY: plain ints.
        let r = unsafe { libc::kill(pid, sig.unwrap_or(libc::SIGTERM)) };
        result(lua, r.into(), None)
    })?;
    add(lua, &t, "sleep", |_, secs: u32| {
        // SAFETY: a plain int.
        Ok(f64::from(unsafe { libc::sleep(secs) }))
    })?;
    add(lua, &t, "getcwd", |lua, ()| match std::env::current_dir() {
        Ok(d) => {
            use std::os::unix::ffi::OsStrExt;
            Value::String(lua.create_string(d.as_os_str().as_bytes())?).into_lua_multi(lua)
        }
        Err(e) => error(lua, None, e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    add(lua, &t, "getenv", |lua, name: Option<String>| match name {
        Some(n) => std::env::var_os(n)
            .map(|v| v.to_string_lossy().into_owned())
            .into_lua_multi(lua),
        None => {
            let t = lua.create_table()?;
            for (k, v) in std::env::vars_os() {
                t.set(
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )?;
            }
            t.into_lua_multi(lua)
        }
    })?;
    add(
        lua,
        &t,
        "setenv",
        |lua, (k, v, over): (String, String, Option<bool>)| {
            let (k, v) = (cstr(k.as_bytes())?, cstr(v.as_bytes())?);
            // SAFETY: NUL-terminated strings; the process is single-threaded.
            let r =
                unsafe { libc::setenv(k.as_ptr(), v.as_ptr(), i32::from(over.unwrap_or(true))) };
            result(lua, r.into(), None)
        },
    )?;
    add(lua, &t, "unsetenv", |lua, k: String| {
        let k = cstr(k.as_bytes())?;
        // SAFETY: a NUL-terminated string; the process is single-threaded.
        let r = unsafe { libc::unsetenv(k.as_ptr()) };
        result(lua, r.into(), None)
    })?;
    add(lua, &t, "putenv", |lua, kv: String| {
        let Some((k, v)) = kv.split_once('=') else {
            return error(lua, None, libc::EINVAL);
        };
        let (k, v) = (cstr(k.as_bytes())?, cstr(v.as_bytes())?);
        // SAFETY: NUL-terminated strings; the process is single-threaded.
        let r = unsafe { libc::setenv(k.as_ptr(), v.as_ptr(), 1) };
        result(lua, r.into(), None)
    })?;
    add(lua, &t, "getprocessid", |lua, sel: Option<String>| {
        // SAFETY: these calls cannot fail.
        let ids: [(&str, f64); 7] = unsafe {
            [
                ("egid", libc::getegid().into()),
                ("euid", libc::geteuid().into()),
                ("gid", libc::getgid().into()),
                ("uid", libc::getuid().into()),
                ("pgrp", libc::getpgrp().into()),
                ("pid", libc::getpid().into()),
                ("ppid", libc::getppid().into()),
            ]
        };
        match sel {
            Some(s) => match ids.iter().find(|(k, _)| *k == s) {
                Some((_, v)) => v.into_lua_multi(lua),
                None => Err(mlua::Error::runtime(format!(
                    "bad process id selector {s:?}"
                ))),
            },
            None => {
                let t = lua.create_table()?;
                for (k, v) in ids {
                    t.set(k, v)?;
                }
                t.into_lua_multi(lua)
            }
        }
    })?;
    add(lua, &t, "link", |lua, (a, b): (Bytes, Bytes)| {
        let (ca, cb) = (cstr(&a.as_bytes())?, cstr(&b.as_bytes())?);
        // SAFETY: NUL-terminated paths.
        let r = unsafe { libc::link(ca.as_ptr(), cb.as_ptr()) };
        result(lua, r.into(), Some(&b.to_string_lossy()))
    })?;
    add(lua, &t, "symlink", |lua, (a, b): (Bytes, Bytes)| {
        let (ca, cb) = (cstr(&a.as_bytes())?, cstr(&b.as_bytes())?);
        // SAFETY: NUL-terminated paths.
        let r = unsafe { libc::symlink(ca.as_ptr(), cb.as_ptr()) };
        result(lua, r.into(), Some(&b.to_string_lossy()))
    })?;
    add(lua, &t, "readlink", |lua, p: Bytes| {
        use std::os::unix::ffi::{OsStrExt, OsStringExt};
        match std::fs::read_link(std::ffi::OsStr::from_bytes(&p.as_bytes())) {
            Ok(target) => Value::String(lua.create_string(target.into_os_string().into_vec())?)
                .into_lua_multi(lua),
            Err(e) => io_error(lua, &p.as_bytes(), e),
        }
    })?;
    for (name, call) in [
        ("mkdir", libc_mkdir as fn(&CString) -> i32),
        ("mkfifo", libc_mkfifo),
        ("rmdir", libc_rmdir),
        ("unlink", libc_unlink),
    ] {
        add(lua, &t, name, move |lua, p: Bytes| {
            let c = cstr(&p.as_bytes())?;
            result(lua, call(&c).into(), Some(&p.to_string_lossy()))
        })?;
    }
    // lposix's `stat` does not follow a symbolic link.
    add(lua, &t, "stat", |lua, (p, sel): (Bytes, Option<String>)| {
        let c = cstr(&p.as_bytes())?;
        // SAFETY: a NUL-terminated path and a stat buffer of the right type.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::lstat(c.as_ptr(), &mut st) } == -1 {
            return error(lua, Some(&p.to_string_lossy()), errno());
        }
        let t = stat_table(lua, &st)?;
        match sel {
            Some(s) => t.get::<Value>(s)?.into_lua_multi(lua),
            None => t.into_lua_multi(lua),
        }
    })?;
    add(lua, &t, "umask", |_, m: Option<String>| {
        // SAFETY: umask cannot fail.
        let old = unsafe { libc::umask(0) };
        let allowed = !old & 0o777;
        let new = match &m {
            Some(m) => {
                parse_mode(m, allowed)
                    .ok_or_else(|| mlua::Error::runtime(format!("bad mode {m:?}")))?
                    & 0o777
            }
            None => allowed,
        };
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(!new & 0o777) };
        Ok(mode_string(new))
    })?;
    add(
        lua,
        &t,
        "utime",
        |lua, (p, m, a): (Bytes, Option<i64>, Option<i64>)| {
            let c = cstr(&p.as_bytes())?;
            // SAFETY: time(NULL) cannot fail.
            let now = unsafe { libc::time(std::ptr::null_mut()) };
            let mtime = m.unwrap_or(now);
            let times = libc::utimbuf {
                actime: a.unwrap_or(mtime),
                modtime: mtime,
            };
            // SAFETY: a NUL-terminated path and a filled utimbuf.
            let r = unsafe { libc::utime(c.as_ptr(), &times) };
            result(lua, r.into(), Some(&p.to_string_lossy()))
        },
    )?;
    add(lua, &t, "redirect2null", |lua, fd: i32| {
        redirect2null(lua, fd)
    })?;
    Ok(t)
}

fn libc_mkdir(p: &CString) -> i32 {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::mkdir(p.as_ptr(), 0o777) }
}
fn libc_mkfifo(p: &CString) -> i32 {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::mkfifo(p.as_ptr(), 0o777) }
}
fn libc_rmdir(p: &CString) -> i32 {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::rmdir(p.as_ptr()) }
}
fn libc_unlink(p: &CString) -> i32 {
    // SAFETY: a NUL-terminated path.
    unsafe { libc::unlink(p.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_as_lposix_does() {
        assert_eq!(parse_mode("755", 0), Some(0o755));
        assert_eq!(parse_mode("rwxr-x---", 0), Some(0o750));
        assert_eq!(parse_mode("rwsr-xr-t", 0), Some(0o5755));
        assert_eq!(parse_mode("u+x,go-w", 0o666), Some(0o744));
        assert_eq!(parse_mode("a=r", 0o777), Some(0o444));
        assert_eq!(parse_mode("q+x", 0), None);
        assert_eq!(mode_string(0o4755), "rwsr-xr-x");
        assert_eq!(mode_string(0o1750), "rwxr-x--T");
    }
}
