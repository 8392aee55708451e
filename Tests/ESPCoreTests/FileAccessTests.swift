import ESPCore
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite("Bounded reads and atomic writes")
struct FileAccessTests {
    func tempDir() throws -> String { try TestEnvironment.temporaryDirectory("espforge-files").path }
    static let tiny = InputLimit("a test input", maxBytes: 1000, reason: "a test limit")

    @Test func regularFileWithinLimitIsReadWhole() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/a.bin"))
        #expect(try BoundedFile.read(dir + "/a.bin", limit: Self.tiny) == bytes)
    }

    @Test func largerRegularFileIsRefusedBeforeReading() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A sparse 3 GiB file: refused from its size (reading it would need 3 GiB).
        let path = dir + "/big.bin"
        let fd = open(path, O_WRONLY | O_CREAT, 0o644)
        #expect(ftruncate(fd, 3 << 30) == 0)
        close(fd)
        #expect(throws: FileAccessError(path: path, reason: .tooLarge(size: 3 << 30, limit: .flashContents))) {
            try BoundedFile.read(path, limit: .flashContents)
        }
        let message = FileAccessError(path: path, reason: .tooLarge(size: 3 << 30, limit: .flashContents)).diagnostic.description
        #expect(message.contains("is 3 GiB; a flash image is at most 128 MiB"), "\(message)")
    }

    @Test func characterDeviceIsReadWithACapAndNamed() throws {
        #expect(throws: FileAccessError(path: "/dev/zero", reason: .streamTooLong(kind: .characterDevice, limit: Self.tiny))) {
            try BoundedFile.read("/dev/zero", limit: Self.tiny)
        }
        let text = FileAccessError(path: "/dev/zero", reason: .streamTooLong(kind: .characterDevice, limit: Self.tiny)).diagnostic.description
        #expect(text.contains("is a character device, not a regular file"), "\(text)")
        #expect(try BoundedFile.read("/dev/null", limit: Self.tiny).isEmpty)
    }

    @Test func fifoIsReadWithACap() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/pipe"
        #expect(mkfifo(path, 0o600) == 0)
        let writer = Thread {
            let fd = open(path, O_WRONLY)
            let chunk = [UInt8](repeating: 0x41, count: 600)
            for _ in 0..<4 { _ = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
            close(fd)
        }
        signal(SIGPIPE, SIG_IGN)
        writer.start()
        #expect(throws: FileAccessError(path: path, reason: .streamTooLong(kind: .fifo, limit: Self.tiny))) {
            try BoundedFile.read(path, limit: Self.tiny)
        }
    }

    @Test func missingAndDirectoryAreNamed() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: FileAccessError(path: dir + "/nope", reason: .missing)) { try BoundedFile.read(dir + "/nope", limit: Self.tiny) }
        #expect(throws: FileAccessError(path: dir, reason: .isDirectory)) { try BoundedFile.read(dir, limit: Self.tiny) }
    }

    @Test func sliceOfALargeFileReadsOnlyTheSlice() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/dump.bin"
        var bytes = [UInt8](repeating: 0xFF, count: 0x20000)
        bytes[0x10000] = 0xAA
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let (slice, size) = try BoundedFile.read(path, offset: 0x10000, count: 0x1000, limit: .flashContents)
        #expect(size == 0x20000 && slice.count == 0x1000 && slice[0] == 0xAA)
    }

    // MARK: Atomic writes

    @Test func plantedSymlinkAtTheOldPredictableTempNameIsNotWrittenThrough() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim"
        try Data("victim's file".utf8).write(to: URL(fileURLWithPath: victim))
        // Names the three former writers used: `.<name>.tmp-<pid>` and `<name>.tmp-<pid>`.
        for planted in [dir + "/.key.bin.tmp-\(getpid())", dir + "/key.bin.tmp-\(getpid())"] {
            #expect(symlink(victim, planted) == 0)
        }
        try AtomicFile.write([1, 2, 3], to: dir + "/key.bin", mode: AtomicFile.secretMode)
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim)) == Data("victim's file".utf8))
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/key.bin")) == Data([1, 2, 3]))
    }

    @Test func symlinkAtTheTargetIsReplacedNotFollowed() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim"
        try Data("keep".utf8).write(to: URL(fileURLWithPath: victim))
        #expect(symlink(victim, dir + "/out.bin") == 0)
        try AtomicFile.write([9], to: dir + "/out.bin")
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim)) == Data("keep".utf8))
        var info = stat()
        #expect(lstat(dir + "/out.bin", &info) == 0 && info.st_mode & S_IFMT == S_IFREG)
    }

    @Test func secretsAre0600FromCreationAndNoTemporaryStays() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let old = umask(0)
        defer { umask(old) }
        try AtomicFile.write([UInt8](repeating: 7, count: 32), to: dir + "/fe.key", mode: AtomicFile.secretMode)
        var info = stat()
        #expect(stat(dir + "/fe.key", &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["fe.key"])
    }

    @Test func failedStreamingWriteLeavesTargetUntouched() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("old".utf8).write(to: URL(fileURLWithPath: dir + "/t"))
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try AtomicFile.write(to: dir + "/t") { sink in
                try sink.write([1, 2, 3])
                throw Stop()
            }
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/t")) == Data("old".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["t"])
    }

    @Test func leftoversAreRecognisedByDeadWriter() {
        // PID 2^22+1 is above Linux's pid_max limit; it is never running.
        #expect(AtomicFile.isLeftover(".efuse.bin.tmp-4194305-0123456789abcdef"))
        #expect(!AtomicFile.isLeftover(".efuse.bin.tmp-\(getpid())-0123456789abcdef"))
        #expect(!AtomicFile.isLeftover("efuse.bin"))
        #expect(!AtomicFile.isLeftover(".efuse.bin.tmp-4194305"))
    }

    // MARK: Terminal-safe messages

    @Test func controlCharactersAreEscapedAndLongInputIsCut() {
        #expect(Diagnostic.terminalSafe("name '\u{1B}[31mred\u{1B}[0m'") == "name '\\x1b[31mred\\x1b[0m'")
        #expect(Diagnostic.terminalSafe("a\tb\r\n\u{0}\u{9B}") == "a\\tb\\r\\n\\x00\\u{9b}")
        let huge = "value '" + String(repeating: "A", count: 16 << 20) + "' is bad"
        let safe = Diagnostic.terminalSafe(huge)
        #expect(safe.count < 200, "\(safe.count)")
        #expect(safe.hasSuffix("' is bad") && safe.contains("more)"))
        let spaced = String(repeating: "ab ", count: 10_000)
        #expect(Diagnostic.terminalSafe(spaced).count <= Diagnostic.maxTextLength + 80)
        #expect(Diagnostic.terminalSafe(String(repeating: " ", count: 16 << 20)).count <= Diagnostic.maxTextLength + 80)
    }
}
