//! rpm's built-in `<lua>` scriptlets, run inside the scriptlet sandbox.
//!
//! rpm runs these in its own process; packages use them where no shell
//! can be assumed (`filesystem`'s `%pretrans` on a fresh root, before any
//! `/bin/sh` exists). cvmbuild never runs package code on the host, so the
//! interpreter is cvmbuild itself in a hidden mode ([`MODE`], dispatched
//! first thing in `main`), started by bubblewrap like any other scriptlet
//! program. The tree may have another libc or none, so the host's
//! executable, its dynamic loader and the libraries it has loaded are
//! bound read-only under [`HOST_DIR`] on the sandbox's own `/dev` (nothing
//! lands in the tree) and run through that loader with `--library-path`
//! and `--inhibit-cache`: the tree's `ld.so.cache` and libraries are never
//! consulted.
//!
//! The executable that runs `assemble` must be one whose `main` calls
//! [`dispatch`] first (cvmbuild's does); the mode refuses to start
//! anywhere but at its path inside the sandbox.
//!
//! Inside, a Lua 5.4 state gets what rpm 4.18 gives a scriptlet: the
//! standard libraries (mlua's safe set: no `debug`, no C modules), `arg` (`arg[1]` is `"<lua>"`, `arg[2]` the `$1`
//! number, as rpm ≥ 4.17 passes them), the `posix` module ([`posix`]),
//! the `rpm` module and the `macros` table ([`rpm`]). `print` and
//! `io.write` go to the scriptlet's output; `math.random` is seeded from
//! `SOURCE_DATE_EPOCH`, and the string-hash seed (the order in which
//! `pairs()` visits string keys) is a constant compiled in
//! (`.cargo/config.toml`), so a script does the same thing every build.
//! A Lua error is printed as rpm
//! prints it (`lua script failed: …`) and is the scriptlet's failure
//! (exit status 1), which `scriptlets` treats by rpm's rules.

mod posix;
mod rpm;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mlua::{Lua, Value};

/// The hidden first argument that makes `cvmbuild` a Lua interpreter.
pub const MODE: &str = "__cvmbuild-lua-scriptlet";
/// Where the host's executable and libraries appear in the sandbox.
pub const HOST_DIR: &str = "/dev/.cvmbuild-host";

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LuaError {
    #[error("cannot read {}: {source}", path.display())]
    #[diagnostic(code(build::lua_host))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {why}", path.display())]
    #[diagnostic(
        code(build::lua_host),
        help("`<lua>` scriptlets run cvmbuild's own executable in the sandbox; it must be an ELF file")
    )]
    Elf { path: PathBuf, why: String },
}

/// How bubblewrap starts the interpreter: the extra bind arguments and
/// the program's argv (the scriptlet's file and arguments follow).
#[derive(Debug)]
pub struct Launch {
    pub bwrap_args: Vec<OsString>,
    pub argv: Vec<String>,
}

/// rpm's name for a scriptlet in its Lua chunk names (`%prein(NEVRA)`,
/// `%post(NEVRA)`).
fn rpm_tag(kind: &str) -> &str {
    match kind {
        "pre" => "prein",
        k => k,
    }
}

/// The binds and argv prefix for this executable, found once per process
/// (reading a 60 MB debug build for every scriptlet would dominate).
static HOST: OnceLock<Launch> = OnceLock::new();

impl Launch {
    /// The launch of `nevra`'s `%kind` scriptlet by this very executable.
    pub fn new(nevra: &str, kind: &str) -> Result<Launch, LuaError> {
        let host = match HOST.get() {
            Some(h) => h,
            None => {
                let h = Launch::host()?;
                HOST.get_or_init(|| h)
            }
        };
        let mut argv = host.argv.clone();
        argv.push(format!("%{}({nevra})", rpm_tag(kind)));
        Ok(Launch {
            bwrap_args: host.bwrap_args.clone(),
            argv,
        })
    }

    fn host() -> Result<Launch, LuaError> {
        let exe_path = PathBuf::from("/proc/self/exe");
        let exe = std::fs::canonicalize(&exe_path).map_err(|source| LuaError::Io {
            path: exe_path,
            source,
        })?;
        let host_exe = format!("{HOST_DIR}/cvmbuild");
        let mut bwrap_args: Vec<OsString> = vec![
            "--ro-bind".into(),
            exe.clone().into(),
            host_exe.clone().into(),
        ];
        let interp = elf_info(&exe)?.interpreter;
        let mut argv = Vec::new();
        if let Some(interp) = interp {
            let libs = loaded_libraries(&exe)?;
            let lib_dir = format!("{HOST_DIR}/lib");
            for (soname, path) in &libs {
                bwrap_args.extend([
                    "--ro-bind".into(),
                    path.clone().into_os_string(),
                    format!("{lib_dir}/{soname}").into(),
                ]);
            }
            let loader = Path::new(&interp)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| libs.contains_key(n))
                .ok_or_else(|| LuaError::Elf {
                    path: exe.clone(),
                    why: format!("its loader {interp} is not among the loaded libraries"),
                })?;
            argv.extend([
                format!("{lib_dir}/{loader}"),
                "--inhibit-cache".into(),
                "--library-path".into(),
                lib_dir,
            ]);
        }
        argv.extend([host_exe, MODE.into()]);
        Ok(Launch { bwrap_args, argv })
    }
}

struct ElfInfo {
    interpreter: Option<String>,
    soname: Option<String>,
}

fn elf_info(path: &Path) -> Result<ElfInfo, LuaError> {
    let bytes = std::fs::read(path).map_err(|source| LuaError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| LuaError::Elf {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    Ok(ElfInfo {
        interpreter: elf.interpreter.map(String::from),
        soname: elf.soname.map(String::from),
    })
}

/// The shared libraries this process has mapped (its loader included),
/// by soname: exactly what the executable needs on this host, found
/// without the host's `ldd` or search rules.
fn loaded_libraries(exe: &Path) -> Result<BTreeMap<String, PathBuf>, LuaError> {
    let maps_path = PathBuf::from("/proc/self/maps");
    let maps = std::fs::read_to_string(&maps_path).map_err(|source| LuaError::Io {
        path: maps_path,
        source,
    })?;
    let mut libs = BTreeMap::new();
    for line in maps.lines() {
        // address perms offset dev inode path
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let path = Path::new(path);
        let is_lib = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(".so"));
        if !path.is_absolute() || path == exe || !is_lib || libs.values().any(|p| p == path) {
            continue;
        }
        if let Ok(ElfInfo {
            soname: Some(soname),
            ..
        }) = elf_info(path)
        {
            libs.entry(soname).or_insert_with(|| path.to_path_buf());
        }
    }
    Ok(libs)
}

/// `Some(exit status)` when this process was started in [`MODE`].
pub fn dispatch() -> Option<i32> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    if args.next()? != MODE {
        return None;
    }
    // Package code never runs on the host: only the sandbox starts the
    // executable under this name.
    if argv0 != Path::new(HOST_DIR).join("cvmbuild").as_os_str() {
        eprintln!("cvmbuild: {MODE} runs only inside the scriptlet sandbox");
        return Some(2);
    }
    Some(scriptlet(&args.collect::<Vec<_>>()))
}

/// Runs `CHUNK-NAME SCRIPT-FILE [ARG...]`; the exit status.
fn scriptlet(args: &[OsString]) -> i32 {
    let [name, script, rest @ ..] = args else {
        eprintln!("usage: cvmbuild {MODE} CHUNK-NAME SCRIPT-FILE [ARG...]");
        return 2;
    };
    let body = match std::fs::read(script) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", Path::new(script).display());
            return 1;
        }
    };
    let lua = Lua::new();
    let run = || -> mlua::Result<()> {
        let arg = lua.create_table()?;
        arg.raw_seti(1, "<lua>")?;
        for (i, a) in rest.iter().enumerate() {
            let a = a.to_string_lossy();
            let v = match a.parse::<i64>() {
                Ok(n) => Value::Integer(n),
                Err(_) => Value::String(lua.create_string(a.as_bytes())?),
            };
            arg.raw_seti(i + 2, v)?;
        }
        lua.globals().set("arg", arg)?;
        lua.globals().set("posix", posix::module(&lua)?)?;
        rpm::install(&lua)?;
        // Lua seeds `math.random` from the clock and addresses; the build
        // seeds it from SOURCE_DATE_EPOCH so the same inputs draw the same.
        let seed = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0);
        let math: mlua::Table = lua.globals().get("math")?;
        math.get::<mlua::Function>("randomseed")?.call::<()>(seed)?;
        lua.load(&body[..]).set_name(name.to_string_lossy()).exec()
    };
    let result = run();
    // Lua's `print` and `io.write` buffer in C's stdio.
    // SAFETY: flushing every C stream has no preconditions.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: lua script failed: {}", message(&e));
            1
        }
    }
}

/// A Lua error's message without mlua's traceback.
fn message(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::CallbackError { cause, .. } => return message(cause),
        mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => m.clone(),
        e => e.to_string(),
    };
    match text.split_once("\nstack traceback:") {
        Some((m, _)) => m.to_string(),
        None => text,
    }
}
