//! A worker's I/O: the ring, connects, receives from the pool, sends, and
//! taking a client down. What the bytes mean is [`super::traffic`]'s
//! business.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::{cqueue, opcode, squeue, types};

use super::client::ClientState;
use super::handshake;
use super::pool::{BUFFER_BYTES, BUFFER_GROUP};
use super::worker::{Worker, COMPLETION_BATCH, POOL_SLOT};
use crate::ring::{is_transient_errno, push, submit_and_wait_ns, token, untoken, Op};
use crate::socket;

impl Worker {
    /// Submits what is queued, waits up to `wait_ns` for completions,
    /// handles them and arms receives that were starved.
    pub(super) fn turn(&mut self, wait_ns: u64) -> io::Result<()> {
        self.enter(wait_ns)?;
        self.drain_completions();
        for slot in std::mem::take(&mut self.starved) {
            self.start_recv(slot);
        }
        self.publish();
        Ok(())
    }

    fn enter(&mut self, wait_ns: u64) -> io::Result<()> {
        submit_and_wait_ns(&mut self.ring, wait_ns)
    }

    fn drain_completions(&mut self) {
        let mut batch = std::mem::take(&mut self.completions);
        loop {
            batch.clear();
            batch.extend(
                self.ring
                    .completion()
                    .take(COMPLETION_BATCH)
                    .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
            );
            if batch.is_empty() {
                break;
            }
            for &(user_data, result, flags) in &batch {
                let (op, slot, _) = untoken(user_data);
                match op {
                    Op::Aux if slot == POOL_SLOT => {
                        assert!(result >= 0, "providing receive buffers failed: {result}");
                    }
                    Op::Aux => {}
                    Op::Connect => self.on_connect(slot, result),
                    Op::Recv => self.on_recv(slot, result, flags),
                    Op::Send => self.on_send(slot, result),
                }
            }
        }
        self.completions = batch;
    }

    /// Hands `count` buffers from `first` (back) to the kernel.
    pub(super) fn provide_buffers(&mut self, first: u16, count: u16) {
        let entry = opcode::ProvideBuffers::new(
            self.pool.buffer_ptr(first),
            BUFFER_BYTES as i32,
            count,
            BUFFER_GROUP,
            first,
        )
        .build()
        .user_data(token(Op::Aux, POOL_SLOT, 0));
        // SAFETY: the pool's memory is boxed and lives as long as the
        // worker; when the worker fails it is leaked, never freed.
        unsafe { push(&mut self.ring, &[entry]) };
    }

    /// Opens a socket for a started client and connects it.
    pub(super) fn connect(&mut self, slot: usize) {
        let fd = match self.client_socket(slot) {
            Ok(fd) => fd,
            Err(_) => {
                // Out of descriptors, memory or source ports.
                self.stats.errors.connect += 1;
                self.clients[slot].state = ClientState::Down;
                self.settle(slot);
                return;
            }
        };
        let entries = [
            opcode::Connect::new(
                types::Fd(fd.as_raw_fd()),
                (&raw const self.sockaddr.0).cast(),
                self.sockaddr.1,
            )
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(token(Op::Connect, slot, 0)),
            opcode::LinkTimeout::new(&*self.connect_timeout)
                .build()
                .user_data(token(Op::Aux, slot, 0)),
        ];
        let client = &mut self.clients[slot];
        client.fd = Some(fd);
        client.state = ClientState::Connecting;
        client.connect_in_flight = true;
        // SAFETY: the sockaddr and the timespec are boxed in the worker and
        // outlive the ring's use of them.
        unsafe { push(&mut self.ring, &entries) };
    }

    fn client_socket(&self, slot: usize) -> io::Result<OwnedFd> {
        let fd = socket::tcp_socket(self.run.addr)?;
        let sources = &self.run.source_ips;
        if !sources.is_empty() {
            let global = self.clients[slot].global as usize;
            bind_source(&fd, sources[global % sources.len()])?;
        }
        Ok(fd)
    }

    fn on_connect(&mut self, slot: usize, result: i32) {
        let client = &mut self.clients[slot];
        client.connect_in_flight = false;
        if client.state != ClientState::Connecting {
            self.release_if_idle(slot);
            return;
        }
        if result < 0 {
            self.stats.errors.connect += 1;
            self.shut(slot);
            return;
        }
        client.state = ClientState::Handshaking;
        self.scratch.clear();
        let room = &self.rooms[client.room];
        let run = &self.run;
        for (i, part) in run.path_parts.iter().enumerate() {
            if i > 0 {
                self.scratch.extend_from_slice(run.room_prefix.as_bytes());
                super::chat::write_decimal(&mut self.scratch, room.global as u64);
            }
            self.scratch.extend_from_slice(part.as_bytes());
        }
        self.scratch.push(run.name_separator);
        self.scratch.extend_from_slice(b"name=");
        super::chat::write_name(&mut self.scratch, client.global);
        let key_seed = client.global;
        handshake::write_request(client.pending(), &run.authority, &self.scratch, key_seed);
        self.start_send(slot);
        self.start_recv(slot);
    }

    fn on_recv(&mut self, slot: usize, result: i32, flags: u32) {
        self.clients[slot].recv_in_flight = false;
        let buffer = cqueue::buffer_select(flags);
        if let (Some(id), true) = (buffer, result > 0) {
            if self.clients[slot].is_up() {
                let pool = std::mem::take(&mut self.pool);
                self.on_bytes(slot, pool.bytes(id, result as usize));
                self.pool = pool;
            }
        }
        if let Some(id) = buffer {
            self.provide_buffers(id, 1);
        }
        let client = &self.clients[slot];
        if !client.is_up() {
            self.release_if_idle(slot);
            return;
        }
        match result {
            n if n > 0 => {}
            0 => {
                // The server closed without a close frame, unless it sent
                // one that loadgen is answering.
                if client.state == ClientState::Closing {
                    self.stats.errors.close_unanswered += 1;
                } else if !client.shut_when_sent {
                    self.stats.errors.eof += 1;
                }
                self.shut(slot);
                return;
            }
            err if -err == libc::ENOBUFS => {
                self.starved.push(slot);
                return;
            }
            err if is_transient_errno(-err) => {}
            err => {
                self.fail(slot, -err);
                return;
            }
        }
        self.start_send(slot);
        self.start_recv(slot);
    }

    fn on_send(&mut self, slot: usize, result: i32) {
        let client = &mut self.clients[slot];
        client.send_in_flight = false;
        if !client.is_up() {
            self.release_if_idle(slot);
            return;
        }
        match result {
            n if n > 0 => client.on_sent(n as usize),
            err if err < 0 && is_transient_errno(-err) => {}
            err if err < 0 => {
                self.fail(slot, -err);
                return;
            }
            _ => {
                self.stats.errors.io += 1;
                self.shut(slot);
                return;
            }
        }
        if client.shut_when_sent && client.all_sent() {
            self.shut(slot);
            return;
        }
        self.start_send(slot);
    }

    /// Counts a socket error and shuts the client.
    fn fail(&mut self, slot: usize, errno: i32) {
        match errno {
            libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED => self.stats.errors.reset += 1,
            _ => self.stats.errors.io += 1,
        }
        self.shut(slot);
    }

    pub(super) fn start_send(&mut self, slot: usize) {
        let client = &mut self.clients[slot];
        let fd = client.fd.as_ref().map(AsRawFd::as_raw_fd);
        let Some(bytes) = client.next_send() else {
            return;
        };
        let len = u32::try_from(bytes.len()).expect("send buffers are bounded by the outbox");
        let fd = fd.expect("a client that is up holds its socket");
        let entry = opcode::Send::new(types::Fd(fd), bytes.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(Op::Send, slot, 0));
        client.send_in_flight = true;
        // SAFETY: the bytes belong to the client's send buffer, which is
        // neither moved nor freed while `send_in_flight` is set.
        unsafe { push(&mut self.ring, &[entry]) };
    }

    fn start_recv(&mut self, slot: usize) {
        let client = &mut self.clients[slot];
        if !client.is_up() || client.recv_in_flight {
            return;
        }
        let entry = opcode::Recv::new(
            types::Fd(client.raw_fd()),
            std::ptr::null_mut(),
            BUFFER_BYTES as u32,
        )
        .buf_group(BUFFER_GROUP)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
        .user_data(token(Op::Recv, slot, 0));
        client.recv_in_flight = true;
        // SAFETY: the kernel writes into a pool buffer it picks, and the
        // pool outlives the ring's use of it.
        unsafe { push(&mut self.ring, &[entry]) };
    }

    /// Takes a client down for good: its room loses a member, and the
    /// socket closes once the kernel has returned every operation on it.
    pub(super) fn shut(&mut self, slot: usize) {
        let client = &mut self.clients[slot];
        match client.state {
            ClientState::Down | ClientState::Waiting => return,
            ClientState::Connecting => {
                if client.connect_in_flight {
                    let cancel = opcode::AsyncCancel::new(token(Op::Connect, slot, 0))
                        .build()
                        .user_data(token(Op::Aux, slot, 0));
                    // SAFETY: a cancel points at no memory of ours.
                    unsafe { push(&mut self.ring, &[cancel]) };
                }
            }
            ClientState::Handshaking | ClientState::Open | ClientState::Closing => {
                // Shutting the socket down completes the in-flight receive
                // and send. An error means the socket is already dead.
                // SAFETY: plain syscall on a descriptor the client owns.
                unsafe { libc::shutdown(client.raw_fd(), libc::SHUT_RDWR) };
            }
        }
        client.state = ClientState::Down;
        let was_member = std::mem::replace(&mut client.joined, false);
        self.settle(slot);
        if was_member {
            self.member_left(slot);
        }
        self.release_if_idle(slot);
    }

    fn release_if_idle(&mut self, slot: usize) {
        let client = &mut self.clients[slot];
        assert_eq!(client.state, ClientState::Down);
        if client.idle_in_kernel() {
            // Dropping the descriptor closes the socket.
            client.release();
        }
    }
}

/// Binds `fd` to `ip` with the port left for the connect to choose, so
/// that ports are only unique per destination and each source address
/// serves as many connections as it has ports.
fn bind_source(fd: &OwnedFd, ip: Ipv4Addr) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a c_int and its size is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            std::mem::size_of_val(&one) as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let (storage, len) = socket::to_sockaddr(SocketAddr::new(ip.into(), 0));
    // SAFETY: `storage` holds a sockaddr_in of length `len`.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const storage).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
