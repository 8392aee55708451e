import ESPCore
import FlashEncryption
import Foundation
import Testing
import TestSupport

/// `FlashCipherFiles` (what `flash-encryption encrypt|decrypt` does with files) and the benchmark rows.
@Suite("Flash cipher on files (library)")
struct CipherFilesTests {
    @Test("a file encrypted in 256 KiB chunks equals the in-memory cipher, and decrypts back")
    func streamedEqualsInMemory() throws {
        let dir = try TestEnvironment.temporaryDirectory("fe-files")
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SeededRandom(seed: 42)
        let key = rng.bytes(32), plain = rng.bytes(600_000 - 600_000 % 16)
        let keyPath = dir.appendingPathComponent("k.bin").path, inPath = dir.appendingPathComponent("p.bin").path
        let encPath = dir.appendingPathComponent("e.bin").path, decPath = dir.appendingPathComponent("d.bin").path
        try AtomicFile.write(key, to: keyPath)
        try AtomicFile.write(plain, to: inPath)
        let summary = try FlashCipherFiles.apply(.encrypt, chip: .esp32, keyPath: keyPath, address: 0x10000,
                                                 flashCryptConfig: 0xF, input: inPath, output: encPath)
        #expect(summary.bytes == plain.count && summary.address == "0x00010000" && summary.flashCryptConfig == "0xF")
        #expect(summary.text == "Encrypted \(plain.count) bytes at 0x00010000 with \(summary.algorithm), FLASH_CRYPT_CONFIG 0xF -> \(encPath)\n")
        let cipher = try FlashCipher(chip: .esp32, key: key)
        let encrypted = try BoundedFile.read(encPath, limit: .flashContents)
        #expect(encrypted == (try cipher.encrypt(plain, at: 0x10000)))
        let back = try FlashCipherFiles.apply(.decrypt, chip: .esp32, keyPath: keyPath, address: 0x10000, input: encPath, output: decPath)
        #expect(back.operation == "decrypt" && back.text.hasPrefix("Decrypted "))
        #expect(try BoundedFile.read(decPath, limit: .flashContents) == plain)
    }

    @Test("the output may not be the key or the input; a misaligned address or length leaves no output")
    func refusals() throws {
        let dir = try TestEnvironment.temporaryDirectory("fe-files")
        defer { try? FileManager.default.removeItem(at: dir) }
        let keyPath = dir.appendingPathComponent("k.bin").path, inPath = dir.appendingPathComponent("p.bin").path
        let out = dir.appendingPathComponent("o.bin").path
        try AtomicFile.write([UInt8](repeating: 7, count: 32), to: keyPath)
        try AtomicFile.write([UInt8](repeating: 1, count: 40), to: inPath)
        for target in [keyPath, inPath] {
            do {
                _ = try FlashCipherFiles.apply(.encrypt, chip: .esp32c3, keyPath: keyPath, address: 0, input: inPath, output: target)
                Issue.record("overwrote \(target)")
            } catch let e as UsageError {
                #expect(e.diagnostic.message.hasPrefix("output is the"))
            }
        }
        #expect(throws: (any Error).self) { try FlashCipherFiles.apply(.encrypt, chip: .esp32c3, keyPath: keyPath, address: 8, input: inPath, output: out) }
        #expect(throws: (any Error).self) { try FlashCipherFiles.apply(.encrypt, chip: .esp32c3, keyPath: keyPath, address: 0, input: inPath, output: out) }
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try BoundedFile.read(keyPath, limit: .key) == [UInt8](repeating: 7, count: 32))
    }

    @Test("benchmark rows: four schemes on the chosen backend, positive throughput")
    func benchmarkRows() throws {
        let rows = try FlashCipherBenchmark.run(bytes: 4096, backend: .portable, repetitions: 1)
        #expect(rows.map(\.scheme) == ["esp32", "esp32", "xts-aes-128", "xts-aes-256"])
        #expect(rows.map(\.direction) == ["encrypt", "decrypt", "encrypt", "encrypt"])
        #expect(rows.allSatisfy { $0.backend == "portable" && $0.bytes == 4096 })
        #expect(FlashCipherBenchmark.text(rows).split(separator: "\n").count == 4)
    }
}
