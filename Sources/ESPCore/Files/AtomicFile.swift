#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one way espforge writes a file: all of it or nothing, never through a planted link.
///
/// 1. a temporary file next to the target, `.<name>.tmp-<pid>-<16 random hex digits>`, created
///    with `O_CREAT | O_EXCL | O_NOFOLLOW` and its final mode from the start (0600 for secrets:
///    the key bytes never sit in a file others can read, and a symlink or file planted at the
///    name makes the create fail instead of being written through);
/// 2. the bytes, `fsync`;
/// 3. `rename` over the target (a symlink at the target itself is replaced, not followed);
/// 4. `fsync` of the folder, so the rename survives a power cut.
///
/// On any error the temporary file is removed and the target is untouched. Leftovers of a
/// killed process are recognised by ``isLeftover(_:)`` (the PID in the name is not running).
public enum AtomicFile {
    /// Mode for keys and anything else that must stay private.
    public static let secretMode: mode_t = 0o600
    /// Mode for ordinary outputs (the umask still applies).
    public static let publicMode: mode_t = 0o644

    /// Writes `bytes` to `path` atomically with `mode`. `durable: false` skips the two fsyncs
    /// (still all-or-nothing for this process, not across a power cut): for batches of
    /// regenerable outputs where syncing each file dominates.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = publicMode,
                             durable: Bool = true) throws(FileAccessError) {
        var sink = try Sink(target: path, mode: mode)
        do { try sink.write(bytes) } catch {
            sink.abandon()
            throw error
        }
        try sink.commit(durable: durable)
    }

    /// Writes what `body` produces through `sink` to `path` atomically (streaming, for outputs
    /// too large to hold twice). An error thrown by `body` leaves the target untouched.
    public static func write(to path: String, mode: mode_t = publicMode, _ body: (inout Sink) throws -> Void) throws {
        var sink = try Sink(target: path, mode: mode)
        do { try body(&sink) } catch {
            sink.abandon()
            throw error
        }
        try sink.commit()
    }

    /// An open temporary file on its way to becoming `target`.
    public struct Sink {
        public let target: String
        let temporary: String
        var fd: Int32

        init(target: String, mode: mode_t) throws(FileAccessError) {
            self.target = target
            let (dir, name) = AtomicFile.split(target)
            var attempt = 0
            while true {
                let candidate = (dir.isEmpty ? "" : dir + "/") + "." + name + ".tmp-\(getpid())-" + AtomicFile.randomHex()
                let fd = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
                if fd >= 0 {
                    // Exactly `mode` for secrets, whatever the umask; others keep the umask's say.
                    if mode == AtomicFile.secretMode { _ = fchmod(fd, mode) }
                    self.fd = fd
                    temporary = candidate
                    return
                }
                let code = errno
                attempt += 1
                if (code == EEXIST || code == ELOOP) && attempt < 8 { continue }
                throw FileAccessError(path: target, reason: .cannotWrite(String(cString: strerror(code))))
            }
        }

        /// Appends bytes.
        public mutating func write(_ bytes: [UInt8]) throws(FileAccessError) {
            var failure: Int32 = 0
            bytes.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count, let base = raw.baseAddress {
                    let n = posixWrite(fd, base + done, raw.count - done)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { failure = n < 0 ? errno : EIO; return }
                    done += n
                }
            }
            if failure != 0 { throw FileAccessError(path: target, reason: .cannotWrite(String(cString: strerror(failure)))) }
        }

        /// Appends raw bytes.
        public mutating func write(_ raw: UnsafeRawBufferPointer) throws(FileAccessError) {
            var done = 0
            while done < raw.count, let base = raw.baseAddress {
                let n = posixWrite(fd, base + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    throw FileAccessError(path: target, reason: .cannotWrite(String(cString: strerror(n < 0 ? errno : EIO))))
                }
                done += n
            }
        }

        func abandon() {
            close(fd)
            unlink(temporary)
        }

        func commit(durable: Bool = true) throws(FileAccessError) {
            var failure: Int32 = 0
            if durable, fsync(fd) != 0 { failure = errno }
            if close(fd) != 0, failure == 0 { failure = errno }
            if failure == 0, rename(temporary, target) != 0 { failure = errno }
            if failure != 0 {
                unlink(temporary)
                throw FileAccessError(path: target, reason: .cannotWrite(String(cString: strerror(failure))))
            }
            if durable { AtomicFile.syncDirectory(of: target) }
        }
    }

    /// True for a temporary file of this helper whose writer is no longer running (left by a
    /// killed process); `name` is a file name without folder.
    public static func isLeftover(_ name: String) -> Bool {
        guard name.hasPrefix(".") else { return false }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard let last = parts.last, last.hasPrefix("tmp-") else { return false }
        let rest = last.dropFirst(4).split(separator: "-", omittingEmptySubsequences: false)
        guard rest.count == 2, let pid = Int32(rest[0]), rest[1].count == 16,
              rest[1].allSatisfy({ $0.isHexDigit }) else { return false }
        if pid == getpid() { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    static func split(_ path: String) -> (dir: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    static func randomHex() -> String {
        var g = SystemRandomNumberGenerator()
        let v = g.next() as UInt64
        let hex = String(v, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    static func syncDirectory(of path: String) {
        let dir = split(path).dir
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}

private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.write(fd, buffer, count)
    #else
    Darwin.write(fd, buffer, count)
    #endif
}
