import ESPCore
import Foundation
import Partitions
import Testing
import TestSupport

/// `bootloader` / `partition_table` entries and the recovery bootloader, as gen_esp32part handles
/// them. Facts and the expected bytes: ESP-IDF components/partition_table/gen_esp32part.py
/// __version__ 1.5 (esp-idf commit 102122904ade; the recovery subtype and
/// `--recovery-bootloader-offset` arrived in 1.4, commit 52f14f344d5, ESP-IDF v5.5), read for facts
/// and run once by hand on these CSVs to record its output; its host test
/// `test_bootloader_and_part_table_partitions` uses the first table.
///
/// - type `bootloader` = 0x02 (subtypes primary 0, ota 1, recovery 2), `partition_table` = 0x03
///   (primary 0, ota 1); both aligned to 0x1000.
/// - primary bootloader: offset = the bootloader offset; primary table: offset = the table offset;
///   recovery bootloader: offset = `--recovery-bootloader-offset` (an error without it). Whatever the
///   CSV says in those offset fields is ignored (`N/A` is customary).
/// - every bootloader entry's size = table offset − primary bootloader offset; every table entry's
///   size = 0x1000 (the CSV size is ignored).
/// - the primary entries stay out of automatic placement; the recovery entry takes part in it like
///   an explicit offset (before the running end → "Partitions overlap").
@Suite struct RecoveryBootloaderTests {
    static let idfTestCSV = """
        bootloader,       bootloader,       primary, N/A, N/A
        partition_table,  partition_table,  primary, N/A, N/A
        FactoryApp,       app,              factory, ,    1M
        OtaBTLDR,         bootloader,       ota,     ,    N/A
        OtaPrtTable,      partition_table,  ota,     ,    N/A
        RecoveryBTLDR,    bootloader,       recovery, N/A, N/A
        """

    /// gen_esp32part --offset 0x9000 --primary-bootloader-offset 0x1000 --recovery-bootloader-offset 0x200000.
    static let idfTestBinary = """
        aa5002000010000000800000626f6f746c6f6164657200000000000000000000
        aa5003000090000000100000706172746974696f6e5f7461626c650000000000
        aa5000000000010000001000466163746f727941707000000000000000000000
        aa50020100001100008000004f746142544c4452000000000000000000000000
        aa50030100801100001000004f74615072745461626c65000000000000000000
        aa50020200002000008000005265636f7665727942544c445200000000000000
        ebebffffffffffffffffffffffffffff5c220f036e656824f49e908cd64949d2
        """

    static func options(recovery: Int?) -> PartitionTableOptions {
        var o = PartitionTableOptions(tableOffset: 0x9000, chip: .esp32)
        o.recoveryBootloaderOffset = recovery
        return o
    }

    @Test func espIDFTableByteExact() throws {
        let b = try build(Self.idfTestCSV, Self.options(recovery: 0x200000))
        let e = b.table.entries
        #expect(e.map(\.offset) == [0x1000, 0x9000, 0x10000, 0x110000, 0x118000, 0x200000])
        #expect(e.map(\.size) == [0x8000, 0x1000, 0x100000, 0x8000, 0x1000, 0x8000])
        #expect(e.map(\.type) == [2, 3, 0, 2, 3, 2])
        #expect(e.map(\.subtype) == [0, 0, 0, 1, 1, 2])
        let expected = try #require([UInt8](hexString: Self.idfTestBinary.filter { !$0.isWhitespace }))
        #expect(expected.count == 7 * 32)
        #expect(Array(b.binary.prefix(7 * 32)) == expected)
        #expect(b.binary[(7 * 32)...].allSatisfy { $0 == 0xFF } && b.binary.count == 0xC00)
        // Decoding gives the entries back, and the CSV gen_esp32part prints for it.
        let back = try PartitionTable.parse(binary: b.binary)
        #expect(back.table.entries == e && back.md5 == .valid)
        #expect(back.table.csv().hasSuffix("""
            OtaBTLDR,bootloader,ota,0x110000,32K,
            OtaPrtTable,partition_table,ota,0x118000,4K,
            RecoveryBTLDR,bootloader,recovery,0x200000,32K,

            """))
    }

    @Test func recoveryOffsetComesFromTheOptionOnly() throws {
        // Offset and size in the CSV are ignored for the recovery entry.
        let csv = Self.idfTestCSV.replacingOccurrences(of: "recovery, N/A, N/A", with: "recovery, 0x300000, 0x1000")
        #expect(try build(csv, Self.options(recovery: 0x200000)).binary == build(Self.idfTestCSV, Self.options(recovery: 0x200000)).binary)
        // Table at 0x8000: every bootloader entry is 0x8000 − 0x1000 bytes (gen_esp32part's bytes).
        var o = PartitionTableOptions()
        o.recoveryBootloaderOffset = 0x3F0000
        let b = try build("factory, app, factory, , 1M\nrec, bootloader, recovery, ,", o)
        #expect(Array(b.binary[32..<64]) == [0xAA, 0x50, 0x02, 0x02, 0x00, 0x00, 0x3F, 0x00, 0x00, 0x70, 0x00, 0x00,
                                            0x72, 0x65, 0x63] + [UInt8](repeating: 0, count: 17))
        #expect(Array(b.binary[80..<96]).hexString == "ab9e40d8f76adbada9c9a169e036a1be")
        // The option changes nothing for a table without a recovery entry.
        var plain = PartitionTableOptions()
        plain.recoveryBootloaderOffset = 0x3F0000
        #expect(try build(seedCSV, plain).binary == build(seedCSV).binary)
    }

    @Test func recoveryEntryErrors() throws {
        // No offset given: the entry's line and the offset column, and what to pass.
        let missing = expectError { _ = try build(Self.idfTestCSV, Self.options(recovery: nil)) }
        #expect(missing == .recoveryBootloaderOffsetMissing(name: "RecoveryBTLDR", line: 6, column: 47))
        #expect(missing?.diagnostic.hint?.contains("--recovery-bootloader-offset") == true)
        // Not on a 4 KiB boundary (gen_esp32part: "Offset 0x200800 is not aligned to 0x1000").
        let misaligned = expectError { _ = try build(Self.idfTestCSV, Self.options(recovery: 0x200800)) }
        guard case .misalignedOffset(name: "RecoveryBTLDR", offset: 0x200800, alignment: 0x1000, _)? = misaligned else {
            Issue.record("expected misalignedOffset, got \(String(describing: misaligned))"); return
        }
        // Inside partitions listed before it (gen_esp32part: "Partitions overlap … Previous partition ends 0x119000").
        let overlap = expectError { _ = try build(Self.idfTestCSV, Self.options(recovery: 0x100000)) }
        #expect(overlap == .offsetBeforePrevious(name: "RecoveryBTLDR", offset: 0x100000, previousEnd: 0x119000,
                                                 firstEntry: false, line: 6, column: 47))
    }

    @Test func cliOption() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-recovery")
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("t.csv").path, bin = dir.appendingPathComponent("t.bin").path
        try Self.idfTestCSV.write(toFile: csv, atomically: true, encoding: .utf8)
        let ok = try Espforge.run(["partitions", "build", csv, "-o", bin, "--offset", "0x9000", "--recovery-bootloader-offset", "0x200000"])
        #expect(ok.status == 0, "\(ok.err)")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: bin)))
        #expect(bytes == (try build(Self.idfTestCSV, Self.options(recovery: 0x200000)).binary))
        let show = try Espforge.run(["partitions", "show", bin])
        #expect(show.out.contains("RecoveryBTLDR,bootloader,recovery,0x200000,32K,"))
        let missing = try Espforge.run(["partitions", "build", csv, "-o", bin + "2", "--offset", "0x9000"])
        #expect(missing.status == 1)
        #expect(missing.err.contains("--recovery-bootloader-offset") && missing.err.contains("line 6, column 47"), "\(missing.err)")
        let bad = try Espforge.run(["partitions", "build", csv, "-o", bin + "3", "--recovery-bootloader-offset", "nowhere"])
        #expect(bad.status != 0 && bad.err.contains("--recovery-bootloader-offset 'nowhere'"))
    }
}
