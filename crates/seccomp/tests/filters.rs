//! The filters installed for real: a thread under the queue filter can do
//! its work (eventfds, epoll, io_uring, preadv/pwritev, fdatasync,
//! fallocate, allocation, thread exit) and cannot make a call outside its
//! list; in `kill` mode such a call kills the process.
//!
//! Each filter goes on a thread of its own (a filter applies to the thread
//! that installs it and the threads it starts later), or in a forked child
//! for the kill test, so the test harness itself stays unfiltered.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;

use vblk_seccomp::{apply, filter, Action, ThreadKind};

const DENIED: u32 = 1000; // an errno no real call returns: proves the filter answered

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Run `f` on a new thread under `kind`'s filter with `Errno(DENIED)`.
fn under<T: Send + 'static>(kind: ThreadKind, f: impl FnOnce() -> T + Send + 'static) -> T {
    let prog = filter(kind, Action::Errno(DENIED)).unwrap();
    std::thread::spawn(move || {
        apply(kind, &prog).unwrap();
        f()
    })
    .join()
    .expect("the filtered thread panicked")
}

#[test]
fn queue_thread_cannot_open_sockets_exec_or_open_files() {
    let (sock, exec, open, fork) = under(ThreadKind::Queue, || {
        // SAFETY: plain system calls with valid arguments; their results
        // are only compared.
        unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let sock = (s, errno());
            let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            let e = libc::execve(c"/bin/true".as_ptr(), argv.as_ptr(), envp.as_ptr());
            let exec = (e, errno());
            let o = libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY);
            let open = (o, errno());
            // fork(): clone without CLONE_THREAD (or clone3), refused.
            let f = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
            let fork = (f, errno());
            (sock, exec, open, fork)
        }
    });
    assert_eq!(sock, (-1, DENIED as i32), "socket(AF_INET)");
    assert_eq!(exec, (-1, DENIED as i32), "execve");
    assert_eq!(open, (-1, DENIED as i32), "open");
    assert_eq!(fork, (-1, DENIED as i32), "clone without CLONE_THREAD");
}

#[test]
fn queue_thread_cannot_map_executable_memory() {
    let (p, e) = under(ThreadKind::Queue, || {
        // SAFETY: an anonymous mapping at an address of the kernel's choice.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (p == libc::MAP_FAILED, errno())
    });
    assert!(p, "mmap(PROT_EXEC) went through");
    assert_eq!(e, DENIED as i32);
}

#[test]
fn queue_thread_does_its_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(1 << 20).unwrap();
    // Made before the filter, as the transports do: an eventfd and an epoll.
    // SAFETY: plain system calls; the fds are owned below.
    let (efd, ep) = unsafe {
        (
            libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC),
            libc::epoll_create1(libc::EPOLL_CLOEXEC),
        )
    };
    assert!(efd >= 0 && ep >= 0);
    let f2 = file.try_clone().unwrap();
    let r = under(ThreadKind::Queue, move || -> Result<Vec<u8>, String> {
        let fd = f2.as_raw_fd();
        let data = vec![0x5au8; 8192];
        // SAFETY: valid fds, buffers that outlive the calls.
        unsafe {
            let iov = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            if libc::pwritev(fd, &iov, 1, 4096) != 8192 {
                return Err(format!("pwritev: {}", errno()));
            }
            if libc::pwritev2(fd, &iov, 1, 16384, 0) != 8192 {
                return Err(format!("pwritev2: {}", errno()));
            }
            if libc::fdatasync(fd) != 0 {
                return Err(format!("fdatasync: {}", errno()));
            }
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            if libc::fallocate(fd, mode, 16384, 4096) != 0 && errno() == DENIED as i32 {
                return Err("fallocate refused by the filter".into());
            }
            let one = 1u64.to_ne_bytes();
            if libc::write(efd, one.as_ptr().cast(), 8) != 8 {
                return Err(format!("eventfd write: {}", errno()));
            }
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: 7,
            };
            if libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, efd, &mut ev) != 0 {
                return Err(format!("epoll_ctl: {}", errno()));
            }
            let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
            if libc::epoll_wait(ep, out.as_mut_ptr(), 4, 1000) != 1 || out[0].u64 != 7 {
                return Err(format!("epoll_wait: {}", errno()));
            }
            let mut b = [0u8; 8];
            if libc::read(efd, b.as_mut_ptr().cast(), 8) != 8 {
                return Err(format!("eventfd read: {}", errno()));
            }
            let mut back = vec![0u8; 8192];
            let iov = libc::iovec {
                iov_base: back.as_mut_ptr().cast(),
                iov_len: back.len(),
            };
            if libc::preadv(fd, &iov, 1, 4096) != 8192 {
                return Err(format!("preadv: {}", errno()));
            }
            // The allocator, time, a sleep.
            let big: Vec<u64> = (0..1 << 20).collect();
            std::thread::sleep(std::time::Duration::from_millis(1));
            let _ = std::time::Instant::now();
            drop(big);
            Ok(back)
        }
    });
    assert_eq!(r.unwrap(), vec![0x5au8; 8192]);
    let mut back = vec![0u8; 8192];
    file.seek(SeekFrom::Start(4096)).unwrap();
    file.read_exact(&mut back).unwrap();
    assert_eq!(back, vec![0x5au8; 8192]);
    file.write_all(b"x").unwrap();
    // SAFETY: fds made above, not used after this.
    unsafe {
        libc::close(efd);
        libc::close(ep);
    }
}

#[test]
fn io_uring_works_under_the_queue_filter() {
    // The ring is set up before the filter (the transport thread does it),
    // then driven from the queue thread.
    let mut ring = match io_uring::IoUring::new(8) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipped: no io_uring here ({e})");
            return;
        }
    };
    let n = under(ThreadKind::Queue, move || {
        let nop = io_uring::opcode::Nop::new().build().user_data(42);
        // SAFETY: a NOP references no memory.
        unsafe { ring.submission().push(&nop).unwrap() };
        ring.submit_and_wait(1).map_err(|e| e.to_string())?;
        let c = ring.completion().next().ok_or("no completion")?;
        Ok::<u64, String>(c.user_data())
    });
    assert_eq!(n, Ok(42));
}

#[test]
fn vhost_user_thread_can_start_a_filtered_queue_thread_but_not_bind() {
    let queue = filter(ThreadKind::Queue, Action::Errno(DENIED)).unwrap();
    let r = under(ThreadKind::VhostUser, move || {
        // SAFETY: plain system call, result compared only.
        let s = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
        let sock = (s, errno());
        // A memfd as for the inflight region.
        // SAFETY: a valid NUL-terminated name.
        let m = unsafe { libc::memfd_create(c"x".as_ptr(), libc::MFD_CLOEXEC) };
        let memfd_ok = m >= 0;
        if m >= 0 {
            // SAFETY: our fd.
            unsafe { libc::close(m) };
        }
        // Start a thread that narrows itself further, as runners do.
        let child = std::thread::Builder::new()
            .name("child".into())
            .spawn(move || {
                apply(ThreadKind::Queue, &queue).map_err(|e| e.to_string())?;
                // SAFETY: as above.
                let m = unsafe { libc::memfd_create(c"y".as_ptr(), libc::MFD_CLOEXEC) };
                Ok::<_, String>((m, errno()))
            })
            .map_err(|e| e.to_string())
            .and_then(|h| h.join().map_err(|_| "child panicked".to_string()))
            .and_then(|r| r);
        (sock, memfd_ok, child)
    });
    assert_eq!(r.0, (-1, DENIED as i32), "socket() after the bind");
    assert!(r.1, "memfd_create on the vhost-user thread");
    assert_eq!(
        r.2,
        Ok((-1, DENIED as i32)),
        "memfd_create on a queue thread"
    );
}

#[test]
fn control_thread_cannot_start_threads() {
    let r = under(ThreadKind::Control, || {
        std::thread::Builder::new()
            .spawn(|| ())
            .map(|h| h.join().is_ok())
            .map_err(|e| e.raw_os_error())
    });
    assert!(r.is_err(), "a control thread started a thread");
}

/// In `kill` mode a call outside the list kills the whole process with
/// SIGSYS: run it in a forked child and look at how it died.
#[test]
fn kill_mode_kills_the_process_with_sigsys() {
    let prog = filter(ThreadKind::Queue, Action::KillProcess).unwrap();
    let allowed = filter(ThreadKind::Queue, Action::KillProcess).unwrap();
    for (prog, make_forbidden_call, expect_kill) in [(prog, true, true), (allowed, false, false)] {
        // SAFETY: the child only makes async-signal-safe calls (prctl,
        // seccomp, socket/getpid, _exit) on memory prepared before fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // The child.
            if apply(ThreadKind::Queue, &prog).is_err() {
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(3) };
            }
            // SAFETY: plain system calls; then _exit.
            unsafe {
                if make_forbidden_call {
                    libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                } else {
                    libc::getpid();
                }
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if expect_kill {
            assert!(
                libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
                "status {status:#x}: not killed by SIGSYS"
            );
        } else {
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "status {status:#x}: an allowed call did not go through"
            );
        }
    }
}
