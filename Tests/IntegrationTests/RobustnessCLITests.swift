import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Issue 15, section 1 and 5: the crashes and hygiene findings, through the built tool.
@Suite("Robustness through the CLI")
struct RobustnessCLITests {
    func tempDir() throws -> String { try TestEnvironment.temporaryDirectory("espforge-robust").path }

    func sparse(_ path: String, size: Int) {
        let fd = open(path, O_WRONLY | O_CREAT, 0o644)
        _ = ftruncate(fd, off_t(size))
        close(fd)
    }

    /// `sh -c` so standard input can be /dev/zero (the test process never writes into a pipe
    /// the child stops reading).
    func shell(_ command: String) throws -> ProcessResult {
        try ProcessRunner.run("/bin/sh", ["-c", command])
    }

    @Test func deeplyNestedManifestIsAnErrorNotACrash() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // `x` is level 1; the 32nd `[` (column 4 + 32) or the key of the 16th `{a=` would be level 33.
        for (name, body, column) in [("brackets", String(repeating: "[", count: 20_000), 36),
                                     ("tables", String(repeating: "{a=", count: 20_000), 51)] {
            let path = dir + "/\(name).toml"
            try ("x = " + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            let r = try Espforge.run(["provision", "--manifest", path, "--port", "virtual:" + dir + "/dev"])
            #expect(r.status == 1, "\(name): status \(r.status) \(r.err)")
            #expect(r.err.contains("\(name).toml: line 1, column \(column): nesting is deeper than 32 levels"), "\(r.err)")
        }
    }

    @Test func doctorOnEndlessStandardInputStopsAtTheBootLogLimit() throws {
        let r = try shell("exec '\(Espforge.path)' doctor - < /dev/zero")
        #expect(r.status == 1, "\(r.status) \(r.err)")
        #expect(r.err.contains("standard input: is a character device, not a regular file, and gave more than 16 MiB; a boot log is at most 16 MiB"), "\(r.err)")
    }

    @Test func oversizedFilesAreRefusedByEveryReader() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let big = dir + "/big.bin"
        sparse(big, size: 3 << 30)
        let cases: [([String], String)] = [
            (["image", "info", big], "a flash image is at most 128 MiB"),
            (["partitions", "show", big], "a partition table (binary or CSV) is at most 1 MiB"),
            (["nvs", "show", big], "an NVS partition image is at most 128 MiB"),
            (["otadata", "show", big], "an otadata partition image is at most 1 MiB"),
            (["secure-boot", "info", big], "a flash image is at most 128 MiB"),
            (["doctor", big], "a boot log is at most 16 MiB"),
        ]
        for (args, expected) in cases {
            let r = try Espforge.run(args)
            #expect(r.status == 1, "\(args): \(r.status)")
            #expect(r.err.contains("big.bin: is 3 GiB; " + expected), "\(args): \(r.err)")
        }
    }

    @Test func largeZeroInputsEndQuicklyWithAnError() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let zeros = dir + "/zeros.bin"
        sparse(zeros, size: 1 << 30)
        for args in [["partitions", "show", zeros], ["doctor", zeros], ["partitions", "show", zeros, "--at", "0x8000"]] {
            let r = try Espforge.run(args)
            #expect(r.status == 1, "\(args): \(r.status)")
            #expect(r.err.contains("zeros.bin"), "\(args): \(r.err)")
        }
    }

    @Test func devicesAndFIFOsAreNamed() throws {
        let r = try Espforge.run(["image", "info", "/dev/zero"])
        #expect(r.status == 1)
        #expect(r.err.contains("/dev/zero: is a character device, not a regular file"), "\(r.err)")
        #expect(!r.err.contains("permission denied"))
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/log.fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let f = try shell("head -c 20000000 /dev/zero > '\(fifo)' & exec '\(Espforge.path)' doctor '\(fifo)'")
        #expect(f.status == 1)
        #expect(f.err.contains("log.fifo: is a FIFO (named pipe), not a regular file, and gave more than 16 MiB"), "\(f.err)")
    }

    @Test func errorMessagesQuoteAnEscapedExcerpt() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let csv = dir + "/evil.csv"
        let longName = "\u{1B}]0;pwned\u{07}\u{1B}[2J" + String(repeating: "N", count: 100_000)
        try "# table\n\(longName),data,nvs,0x9000,0x6000\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let r = try Espforge.run(["partitions", "build", csv, "-o", dir + "/out.bin"])
        #expect(r.status == 1)
        #expect(!r.stderr.contains(0x1B) && !r.stderr.contains(0x07), "raw control characters reached the terminal")
        #expect(r.err.contains("\\x1b]0;pwned\\x07\\x1b[2J"), "\(r.err)")
        #expect(r.stderr.count < 1000, "\(r.stderr.count) bytes of error output")
    }

    @Test func keyOutputsIgnoreAPlantedSymlinkAndAre0600() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/someone-elses-file"
        try "untouched".write(toFile: victim, atomically: true, encoding: .utf8)
        // The former predictable temporary name of the key output.
        let pidGuesses = (1...64).map { dir + "/.fe.key.tmp-\(getpid() + Int32($0))" }
        for p in pidGuesses { _ = symlink(victim, p) }
        let r = try Espforge.run(["flash-encryption", "keygen", "-o", dir + "/fe.key"])
        #expect(r.status == 0, "\(r.err)")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "untouched")
        var info = stat()
        #expect(stat(dir + "/fe.key", &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(info.st_size == 32)
    }

    @Test func demoReplacesOnlyItsOwnFilesAndRecoversFromAKilledSetup() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        // A folder with someone's files and no demo record: refused, untouched.
        let foreign = dir + "/foreign"
        try fm.createDirectory(atPath: foreign, withIntermediateDirectories: true)
        try "mine".write(toFile: foreign + "/notes.txt", atomically: true, encoding: .utf8)
        let refused = try Espforge.run(["demo", "--devices", "1", "--dir", foreign, "--json"])
        #expect(refused.status == 1)
        #expect(refused.err.contains("holds files an earlier demo did not write"), "\(refused.err)")
        #expect(try fm.contentsOfDirectory(atPath: foreign) == ["notes.txt"])

        // A demo, then unrelated files next to it, then a rerun: the unrelated files stay.
        let demo = dir + "/demo"
        #expect(try Espforge.run(["demo", "--devices", "2", "--dir", demo, "--json"]).status == 0)
        try "keep".write(toFile: demo + "/notes.txt", atomically: true, encoding: .utf8)
        try "keep".write(toFile: demo + "/devices/readme.txt", atomically: true, encoding: .utf8)
        let again = try Espforge.run(["demo", "--devices", "1", "--dir", demo, "--json"])
        #expect(again.status == 0, "\(again.err)")
        #expect(fm.fileExists(atPath: demo + "/notes.txt") && fm.fileExists(atPath: demo + "/devices/readme.txt"))
        #expect(!fm.fileExists(atPath: demo + "/devices/dev2"), "the earlier demo's second device stayed")
        #expect(fm.fileExists(atPath: demo + "/devices/dev1/device.json"))

        // Setup killed after the record and a few files (no manifest yet): a rerun starts over.
        let killed = dir + "/killed"
        try fm.createDirectory(atPath: killed + "/devices/dev1", withIntermediateDirectories: true)
        try "signing_key.pem\nbootloader.bin\ndevices/dev1/\n".write(toFile: killed + "/.espforge-demo-files", atomically: true, encoding: .utf8)
        try "partial".write(toFile: killed + "/bootloader.bin", atomically: true, encoding: .utf8)
        try "partial".write(toFile: killed + "/devices/dev1/flash.bin", atomically: true, encoding: .utf8)
        let rerun = try Espforge.run(["demo", "--devices", "1", "--dir", killed, "--json"])
        #expect(rerun.status == 0, "\(rerun.err)")
        #expect(fm.fileExists(atPath: killed + "/espforge.toml"))
    }
}
