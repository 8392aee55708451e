#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file could not be read or written. Messages name the file, say what it is and how to fix it.
public struct FileAccessError: Error, DiagnosticConvertible, Equatable {
    public enum Reason: Sendable, Equatable {
        case missing
        case isDirectory
        case permissionDenied
        /// A regular file larger than the limit (its size is known without reading it).
        case tooLarge(size: Int, limit: InputLimit)
        /// A pipe, character device, socket… that gave more than the limit.
        case streamTooLong(kind: FileKind, limit: InputLimit)
        case notUTF8
        case cannotRead(String)
        case cannotWrite(String)
    }

    public let path: String
    public let reason: Reason

    public init(path: String, reason: Reason) {
        self.path = path
        self.reason = reason
    }

    public var diagnostic: Diagnostic {
        let file = path == "-" ? "standard input" : path
        switch reason {
        case .missing:
            return Diagnostic("no such file", file: file, hint: "check the path")
        case .isDirectory:
            return Diagnostic("is a directory, not a file", file: file)
        case .permissionDenied:
            return Diagnostic("cannot be read: permission denied", file: file, hint: "check the file's owner and mode")
        case let .tooLarge(size, limit):
            return Diagnostic("is \(ByteCount.format(size)); \(limit.what) is at most \(ByteCount.format(limit.maxBytes)) (\(limit.reason))",
                              file: file, hint: "check that this is the right file")
        case let .streamTooLong(kind, limit):
            return Diagnostic("is \(kind.description), not a regular file, and gave more than \(ByteCount.format(limit.maxBytes)); \(limit.what) is at most \(ByteCount.format(limit.maxBytes)) (\(limit.reason))",
                              file: file, hint: kind == .characterDevice ? "give a regular file, not a device" : "check what is written into it")
        case .notUTF8:
            return Diagnostic("is not valid UTF-8 text", file: file)
        case let .cannotRead(why):
            return Diagnostic("cannot be read: \(why)", file: file)
        case let .cannotWrite(why):
            return Diagnostic("cannot be written: \(why)", file: file, hint: "check that the folder exists and is writable")
        }
    }
}

private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.read(fd, buffer, count)
    #else
    Darwin.read(fd, buffer, count)
    #endif
}

/// What a path is, as `stat` sees it.
public enum FileKind: Sendable, Equatable, CustomStringConvertible {
    case regular, directory, characterDevice, blockDevice, fifo, socket, other

    init(mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .regular
        case S_IFDIR: self = .directory
        case S_IFCHR: self = .characterDevice
        case S_IFBLK: self = .blockDevice
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        default: self = .other
        }
    }

    public var description: String {
        switch self {
        case .regular: return "a regular file"
        case .directory: return "a directory"
        case .characterDevice: return "a character device"
        case .blockDevice: return "a block device"
        case .fifo: return "a FIFO (named pipe)"
        case .socket: return "a socket"
        case .other: return "a special file"
        }
    }
}

/// Bounded reads: the one way espforge reads user files and standard input.
///
/// A regular file's size is checked (fstat) before anything is read and the bytes are read once,
/// straight into the array returned; pipes, FIFOs and devices are read in chunks up to the limit
/// (one byte more means the input is refused).
public enum BoundedFile {
    /// Reads the whole file at `path` (`"-"`: standard input) if it is within `limit`.
    public static func read(_ path: String, limit: InputLimit) throws(FileAccessError) -> [UInt8] {
        if path == "-" { return try read(fd: 0, name: path, limit: limit) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw openError(path, errno) }
        defer { close(fd) }
        return try read(fd: fd, name: path, limit: limit)
    }

    /// Reads UTF-8 text (see ``read(_:limit:)``).
    public static func readText(_ path: String, limit: InputLimit) throws(FileAccessError) -> String {
        let bytes = try read(path, limit: limit)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw FileAccessError(path: path, reason: .notUTF8)
        }
        return text
    }

    /// Reads `count` bytes at `offset` of a regular file no larger than `limit` (e.g. one sector
    /// of a flash dump), without reading the rest. Fewer bytes come back at the end of the file.
    public static func read(_ path: String, offset: Int, count: Int, limit: InputLimit) throws(FileAccessError) -> (bytes: [UInt8], fileSize: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw openError(path, errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileAccessError(path: path, reason: .cannotRead(errnoText(errno))) }
        let kind = FileKind(mode: info.st_mode)
        guard kind == .regular else {
            // Not seekable in general: read the bounded whole and slice.
            let all = try read(fd: fd, name: path, limit: limit, kind: kind)
            let start = min(max(0, offset), all.count)
            return (Array(all[start..<min(all.count, start + count)]), all.count)
        }
        let size = Int(info.st_size)
        guard size <= limit.maxBytes else { throw FileAccessError(path: path, reason: .tooLarge(size: size, limit: limit)) }
        let n = max(0, min(count, size - offset))
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: n) { buffer, initialized in
            initialized = 0
            while initialized < n, let base = buffer.baseAddress {
                let r = pread(fd, base + initialized, n - initialized, off_t(offset + initialized))
                if r < 0 && errno == EINTR { continue }
                if r < 0 { failure = errno; break }
                if r == 0 { break }
                initialized += r
            }
        }
        if failure != 0 { throw FileAccessError(path: path, reason: .cannotRead(errnoText(failure))) }
        return (bytes, size)
    }

    /// What `path` is and its size, without reading it (nil when it does not exist).
    public static func kind(of path: String) -> (kind: FileKind, size: Int)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (FileKind(mode: info.st_mode), Int(info.st_size))
    }

    /// Reads an open descriptor (not closed here) within `limit`; `name` is for messages.
    public static func read(fd: Int32, name: String, limit: InputLimit) throws(FileAccessError) -> [UInt8] {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileAccessError(path: name, reason: .cannotRead(errnoText(errno))) }
        return try read(fd: fd, name: name, limit: limit, kind: FileKind(mode: info.st_mode), size: Int(info.st_size))
    }

    private static func read(fd: Int32, name: String, limit: InputLimit, kind: FileKind, size: Int = 0) throws(FileAccessError) -> [UInt8] {
        switch kind {
        case .directory:
            throw FileAccessError(path: name, reason: .isDirectory)
        case .regular:
            guard size <= limit.maxBytes else { throw FileAccessError(path: name, reason: .tooLarge(size: size, limit: limit)) }
            // Read the size fstat reported, in place; then make sure nothing follows (a growing
            // file is read on as a stream, still within the limit).
            var failure: Int32 = 0
            var bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
                initialized = 0
                while initialized < size, let base = buffer.baseAddress {
                    let r = posixRead(fd, base + initialized, size - initialized)
                    if r < 0 && errno == EINTR { continue }
                    if r < 0 { failure = errno; break }
                    if r == 0 { break }
                    initialized += r
                }
            }
            if failure != 0 { throw FileAccessError(path: name, reason: .cannotRead(errnoText(failure))) }
            if bytes.count == size {
                // Probe for more without touching the array (appending would copy it).
                var probe: UInt8 = 0
                var r: Int
                repeat { r = posixRead(fd, &probe, 1) } while r < 0 && errno == EINTR
                if r > 0 {
                    bytes.append(probe)
                    try appendStream(fd: fd, name: name, limit: limit, kind: kind, into: &bytes)
                }
            }
            return bytes
        default:
            var bytes: [UInt8] = []
            try appendStream(fd: fd, name: name, limit: limit, kind: kind, into: &bytes)
            return bytes
        }
    }

    /// Reads to the end of `fd` in chunks, refusing more than `limit` bytes in total.
    private static func appendStream(fd: Int32, name: String, limit: InputLimit, kind: FileKind,
                                     into bytes: inout [UInt8]) throws(FileAccessError) {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let room = limit.maxBytes + 1 - bytes.count
            guard room > 0 else { throw FileAccessError(path: name, reason: .streamTooLong(kind: kind, limit: limit)) }
            let want = min(chunk.count, room)
            var got = 0
            var failure: Int32 = 0
            chunk.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return }
                while true {
                    let r = posixRead(fd, base, want)
                    if r < 0 && errno == EINTR { continue }
                    if r < 0 { failure = errno } else { got = r }
                    return
                }
            }
            if failure != 0 { throw FileAccessError(path: name, reason: .cannotRead(errnoText(failure))) }
            if got == 0 { return }
            bytes.append(contentsOf: chunk[0..<got])
            if bytes.count > limit.maxBytes {
                throw kind == .regular
                    ? FileAccessError(path: name, reason: .tooLarge(size: bytes.count, limit: limit))
                    : FileAccessError(path: name, reason: .streamTooLong(kind: kind, limit: limit))
            }
        }
    }

    static func openError(_ path: String, _ code: Int32) -> FileAccessError {
        switch code {
        case ENOENT, ENOTDIR: return FileAccessError(path: path, reason: .missing)
        case EACCES, EPERM: return FileAccessError(path: path, reason: .permissionDenied)
        case EISDIR: return FileAccessError(path: path, reason: .isDirectory)
        default: return FileAccessError(path: path, reason: .cannotRead(errnoText(code)))
        }
    }

    static func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }
}
