import ESPCore
import Foundation

/// File access at the edge of the tool. Errors name the file and say what to do.
enum FileIO {
    static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
                throw UsageError(Diagnostic(isDir.boolValue ? "is a directory, not a file" : "cannot be read (permission denied?)",
                                            file: path))
            }
            throw UsageError(Diagnostic("no such file", file: path, hint: "check the path"))
        }
        return [UInt8](data)
    }

    static func readText(_ path: String) throws -> String {
        let bytes = try read(path)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw UsageError(Diagnostic("is not valid UTF-8 text", file: path))
        }
        return text
    }

    /// Writes `bytes` atomically (temporary file + rename). `secret: true` creates the file with
    /// mode 0600 before any byte is written, for private keys and symmetric keys.
    static func write(_ bytes: [UInt8], to path: String, secret: Bool = false) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        let mode: mode_t = secret ? 0o600 : 0o644
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else {
            throw UsageError(Diagnostic("cannot create file: \(String(cString: strerror(errno)))", file: path,
                                        hint: "check that the folder exists and is writable"))
        }
        if secret { fchmod(fd, 0o600) }
        var written = 0
        let ok: Bool = bytes.withUnsafeBytes { raw in
            while written < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
                if n <= 0 { return false }
                written += n
            }
            return true
        }
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw UsageError(Diagnostic("cannot write file: \(String(cString: strerror(errno)))", file: path))
        }
    }

    static func write(_ text: String, to path: String) throws {
        try write(Array(text.utf8), to: path)
    }
}
