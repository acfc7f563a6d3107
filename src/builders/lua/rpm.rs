//! The `rpm` module and the `macros` table rpm gives Lua scriptlets.
//!
//! Macros are rpm's standard path macros for an Enterprise Linux install
//! of this architecture (`%{_prefix}`, `%{_sysconfdir}`, `%{_libdir}`…),
//! fixed here rather than read from any rpm configuration, so a
//! scriptlet expands them the same way on every build host. The expander
//! handles what scriptlets write: `%name`, `%{name}`, `%%`, and the
//! conditionals `%{?name}`, `%{?name:text}`, `%{!?name:text}`; an
//! undefined `%{name}` stays as written, as rpm leaves it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use mlua::{IntoLuaMulti, Lua, MultiValue, Result, Table, Value, Variadic};

use crate::repo::Evr;

#[derive(Clone, Debug)]
struct Def {
    body: String,
    parametric: bool,
}

/// Macro definitions; a name's later definitions stack over earlier ones
/// (`rpm.undefine` pops one), as in rpm.
#[derive(Debug)]
pub(super) struct Macros {
    defs: HashMap<String, Vec<Def>>,
}

const MAX_DEPTH: usize = 64;

impl Macros {
    /// rpm's standard path macros (EL 9's `/usr/lib/rpm/macros`).
    pub(super) fn standard() -> Macros {
        let arch = std::env::consts::ARCH;
        let lib = if arch.ends_with("64") { "lib64" } else { "lib" };
        let mut m = Macros {
            defs: HashMap::new(),
        };
        for (name, body) in [
            ("_usr", "/usr"),
            ("_var", "/var"),
            ("_prefix", "%{_usr}"),
            ("_exec_prefix", "%{_prefix}"),
            ("_bindir", "%{_exec_prefix}/bin"),
            ("_sbindir", "%{_exec_prefix}/sbin"),
            ("_libexecdir", "%{_exec_prefix}/libexec"),
            ("_datadir", "%{_prefix}/share"),
            ("_sysconfdir", "/etc"),
            ("_sharedstatedir", "/var/lib"),
            ("_localstatedir", "/var"),
            ("_lib", lib),
            ("_libdir", "%{_exec_prefix}/%{_lib}"),
            ("_includedir", "%{_prefix}/include"),
            ("_infodir", "%{_datadir}/info"),
            ("_mandir", "%{_datadir}/man"),
            ("_docdir", "%{_datadir}/doc"),
            ("_defaultdocdir", "%{_datadir}/doc"),
            ("_rundir", "/run"),
            ("_tmppath", "%{_var}/tmp"),
            ("_dbpath", "%{_var}/lib/rpm"),
            ("_initddir", "%{_sysconfdir}/rc.d/init.d"),
            ("_unitdir", "/usr/lib/systemd/system"),
            ("_userunitdir", "/usr/lib/systemd/user"),
            ("_install_langs", "all"),
            ("_arch", arch),
            ("_host_cpu", arch),
            ("_host_os", "linux"),
            ("_target_os", "linux"),
        ] {
            m.push(name, body, false);
        }
        m
    }

    fn push(&mut self, name: &str, body: &str, parametric: bool) {
        self.defs.entry(name.to_string()).or_default().push(Def {
            body: body.to_string(),
            parametric,
        });
    }

    fn get(&self, name: &str) -> Option<&Def> {
        self.defs.get(name).and_then(|v| v.last())
    }

    /// `rpm.define("name body")` or `"name(opts) body"`.
    pub(super) fn define(&mut self, line: &str) -> std::result::Result<(), String> {
        let line = line.trim_start();
        let end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(line.len());
        let name = &line[..end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("Macro %{name} has illegal name (%define)"));
        }
        let mut rest = &line[end..];
        let parametric = rest.starts_with('(');
        if parametric {
            let close = rest
                .find(')')
                .ok_or_else(|| format!("Macro %{name} has unterminated opts"))?;
            rest = &rest[close + 1..];
        }
        let body = rest.trim();
        if body.is_empty() {
            return Err(format!("Macro %{name} has empty body"));
        }
        self.push(name, body, parametric);
        Ok(())
    }

    fn undefine(&mut self, name: &str) {
        if let Some(v) = self.defs.get_mut(name) {
            v.pop();
            if v.is_empty() {
                self.defs.remove(name);
            }
        }
    }

    /// `rpm.expand(text)`.
    pub(super) fn expand(&self, s: &str) -> std::result::Result<String, String> {
        self.expand_at(s, 0)
    }

    fn expand_at(&self, s: &str, depth: usize) -> std::result::Result<String, String> {
        if depth > MAX_DEPTH {
            return Err("Too many levels of recursion in macro expansion".into());
        }
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while i < b.len() {
            let Some(off) = s[i..].find('%') else {
                out.push_str(&s[i..]);
                break;
            };
            out.push_str(&s[i..i + off]);
            i += off;
            match b.get(i + 1) {
                Some(b'%') => {
                    out.push('%');
                    i += 2;
                }
                Some(b'{') => {
                    let Some(close) = matching_brace(&b[i + 1..]) else {
                        return Err(format!("Unterminated {{: {}", &s[i..]));
                    };
                    let inner = &s[i + 2..i + 1 + close];
                    out.push_str(&self.braced(inner, depth)?);
                    i += close + 2;
                }
                Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                    let start = i + 1;
                    let end = s[start..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .map_or(s.len(), |e| start + e);
                    match self.get(&s[start..end]) {
                        Some(d) => out.push_str(&self.expand_at(&d.body, depth + 1)?),
                        None => out.push_str(&s[i..end]),
                    }
                    i = end;
                }
                _ => {
                    out.push('%');
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    /// The expansion of `%{inner}`.
    fn braced(&self, inner: &str, depth: usize) -> std::result::Result<String, String> {
        let mut rest = inner;
        let (mut neg, mut query) = (false, false);
        while let Some(c) = rest.chars().next().filter(|c| matches!(c, '!' | '?')) {
            if c == '!' {
                neg = !neg;
            } else {
                query = true;
            }
            rest = &rest[1..];
        }
        let (name, text) = match rest.split_once(':') {
            Some((n, t)) => (n, Some(t)),
            None => (rest, None),
        };
        let def = self.get(name);
        if query {
            return match (def.is_some() != neg, text, def) {
                (false, _, _) => Ok(String::new()),
                (true, Some(t), _) => self.expand_at(t, depth + 1),
                (true, None, Some(d)) => self.expand_at(&d.body, depth + 1),
                (true, None, None) => Ok(String::new()),
            };
        }
        match def {
            Some(d) => self.expand_at(&d.body, depth + 1),
            None => Ok(format!("%{{{inner}}}")),
        }
    }
}

/// Where the `}` matching the `{` at `b[0]` is.
fn matching_brace(b: &[u8]) -> Option<usize> {
    let mut level = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'{' => level += 1,
            b'}' => {
                level -= 1;
                if level == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Sets the globals `rpm` and `macros`.
pub(super) fn install(lua: &Lua) -> Result<()> {
    let macros = Rc::new(RefCell::new(Macros::standard()));
    let t = lua.create_table()?;
    let m = macros.clone();
    t.set(
        "expand",
        lua.create_function(move |_, s: String| {
            m.borrow().expand(&s).map_err(mlua::Error::runtime)
        })?,
    )?;
    let m = macros.clone();
    t.set(
        "define",
        lua.create_function(move |_, s: String| {
            m.borrow_mut().define(&s).map_err(mlua::Error::runtime)
        })?,
    )?;
    let m = macros.clone();
    t.set(
        "undefine",
        lua.create_function(move |_, s: String| {
            m.borrow_mut().undefine(&s);
            Ok(())
        })?,
    )?;
    let m = macros.clone();
    t.set(
        "isdefined",
        lua.create_function(move |_, s: String| {
            Ok(match m.borrow().get(&s) {
                Some(d) => (true, d.parametric),
                None => (false, false),
            })
        })?,
    )?;
    t.set(
        "vercmp",
        lua.create_function(|_, (a, b): (String, String)| {
            let parse = |s: &str| Evr::parse(s).map_err(mlua::Error::runtime);
            Ok(parse(&a)?.cmp(&parse(&b)?) as i64)
        })?,
    )?;
    t.set(
        "execute",
        lua.create_function(|lua, (prog, args): (String, Variadic<String>)| {
            execute(lua, &prog, &args)
        })?,
    )?;
    t.set(
        "redirect2null",
        lua.create_function(|lua, fd: i32| super::posix::redirect2null(lua, fd))?,
    )?;
    lua.globals().set("rpm", t)?;
    lua.globals().set("macros", macros_table(lua, macros)?)?;
    Ok(())
}

/// `rpm.execute(path, args...)`: runs a program (found on `PATH`) and
/// waits; `0`, or `nil`, a message and the wait status.
fn execute(lua: &Lua, prog: &str, args: &[String]) -> Result<MultiValue> {
    use std::os::unix::process::ExitStatusExt;
    // SAFETY: flushing every C stream has no preconditions.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    match std::process::Command::new(prog).args(args).status() {
        Ok(st) if st.success() => 0.0.into_lua_multi(lua),
        Ok(st) => (Value::Nil, "exit code", f64::from(st.into_raw())).into_lua_multi(lua),
        Err(e) => super::posix::error(
            lua,
            Some("posix_spawnp"),
            e.raw_os_error().unwrap_or(libc::ENOENT),
        ),
    }
}

/// The global `macros`: `macros.name` is the expanded value (nil when
/// undefined); assigning defines, assigning nil undefines.
fn macros_table(lua: &Lua, macros: Rc<RefCell<Macros>>) -> Result<Table> {
    let t = lua.create_table()?;
    let meta = lua.create_table()?;
    let m = macros.clone();
    meta.set(
        "__index",
        lua.create_function(move |_, (_, name): (Table, String)| {
            let m = m.borrow();
            match m.get(&name) {
                Some(d) => m
                    .expand(&d.body.clone())
                    .map(Some)
                    .map_err(mlua::Error::runtime),
                None => Ok(None),
            }
        })?,
    )?;
    meta.set(
        "__newindex",
        lua.create_function(move |_, (_, name, v): (Table, String, Option<String>)| {
            let mut m = macros.borrow_mut();
            match v {
                Some(v) => m
                    .define(&format!("{name} {v}"))
                    .map_err(mlua::Error::runtime),
                None => {
                    m.undefine(&name);
                    Ok(())
                }
            }
        })?,
    )?;
    t.set_metatable(Some(meta))?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_macros_expand_as_rpm_expands_them() {
        let mut m = Macros::standard();
        let e = |m: &Macros, s: &str| m.expand(s).unwrap();
        assert_eq!(
            e(&m, "%{_bindir}/x %_sysconfdir 100%%"),
            "/usr/bin/x /etc 100%"
        );
        assert_eq!(e(&m, "%{_libdir}"), "/usr/lib64");
        assert_eq!(
            e(&m, "%{nosuch} %{?nosuch} [%{?nosuch:y}] %{!?nosuch:n}"),
            "%{nosuch}  [] n"
        );
        m.define("foo %{_var}/foo").unwrap();
        m.define("foo bar").unwrap();
        assert_eq!(e(&m, "%{foo}"), "bar");
        m.undefine("foo");
        assert_eq!(e(&m, "%{foo} %{?foo:set}"), "/var/foo set");
        m.undefine("foo");
        assert_eq!(e(&m, "%{?foo:set}"), "");
        m.define("loop %{loop}").unwrap();
        assert!(m.expand("%loop").is_err());
        assert!(m.define("9x y").is_err());
    }
}
