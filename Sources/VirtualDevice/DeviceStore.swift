import EFuse
import ESPCore
import Foundation

/// The files of a device state folder:
///
/// | file | contents |
/// |---|---|
/// | `device.json` | ``DeviceDescription``: chip, revision, package, MAC, flash size and JEDEC id |
/// | `flash.bin` | the whole NOR flash, byte for byte (erased = 0xFF) |
/// | `efuse.bin` | programmed eFuse words, BLOCK0 (7 words) then BLOCK1–3 (8 words each), u32 LE |
/// | `stats.json` | ``DeviceStats``: traffic, operations, virtual time, injected faults |
///
/// Flash is written back incrementally (dirty 4 KiB sectors) so state survives a killed server.
public struct DeviceStore: Sendable {
    public let directory: String
    public init(directory: String) { self.directory = directory }

    public var descriptionPath: String { directory + "/device.json" }
    public var flashPath: String { directory + "/flash.bin" }
    public var efusePath: String { directory + "/efuse.bin" }
    public var statsPath: String { directory + "/stats.json" }

    public var exists: Bool { FileManager.default.fileExists(atPath: descriptionPath) }

    public func create(_ device: Device, force: Bool) throws {
        if exists && !force { throw DeviceError.stateExists(directory) }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw DeviceError.io(directory, "cannot create folder: \(error.localizedDescription)")
        }
        try writeFile(flashPath, device.flash.bytes)
        try saveEFuses(device.efuses)
        try saveStats(device.stats)
        try writeFile(descriptionPath, Array(try json(device.description).utf8))
    }

    public func load() throws -> Device {
        guard exists else { throw DeviceError.stateMissing(directory) }
        removeLeftovers()
        let descBytes = try readFile(descriptionPath)
        let desc: DeviceDescription
        do { desc = try JSONDecoder().decode(DeviceDescription.self, from: Data(descBytes)) } catch {
            throw DeviceError.stateDamaged(descriptionPath, "not a device description (\(error))")
        }
        let flash = try readFile(flashPath, limit: .flashContents)
        guard flash.count == desc.flashSize else {
            throw DeviceError.stateDamaged(flashPath, "has \(flash.count) bytes, device.json says \(desc.flashSize)")
        }
        let efuseBytes = try readFile(efusePath)
        let efuses: EFuseArray
        do { efuses = try EFuseArray(layout: .esp32, bytes: efuseBytes) } catch {
            throw DeviceError.stateDamaged(efusePath, error.diagnostic.message)
        }
        var stats = DeviceStats()
        if let s = try? readFile(statsPath), let decoded = try? JSONDecoder().decode(DeviceStats.self, from: Data(s)) {
            stats = decoded
        }
        return Device(description: desc, flash: NORFlash(contents: flash), efuses: efuses, stats: stats)
    }

    /// Writes the given flash sectors in place.
    public func saveFlashSectors(_ flash: NORFlash, sectors: [Int]) throws {
        guard !sectors.isEmpty else { return }
        let fd = open(flashPath, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw DeviceError.io(flashPath, "cannot open for writing: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try flash.bytes.withUnsafeBytes { raw in
            for s in sectors {
                let off = s * NORFlash.sectorSize
                guard off >= 0, off + NORFlash.sectorSize <= raw.count, let base = raw.baseAddress else { continue }
                var done = 0
                while done < NORFlash.sectorSize {
                    let n = pwrite(fd, base + off + done, NORFlash.sectorSize - done, off_t(off + done))
                    if n <= 0 { throw DeviceError.io(flashPath, "write failed: \(String(cString: strerror(errno)))") }
                    done += n
                }
            }
        }
    }

    public func saveEFuses(_ efuses: EFuseArray) throws { try writeFile(efusePath, efuses.bytes) }

    public func saveStats(_ stats: DeviceStats) throws { try writeFile(statsPath, Array(try json(stats).utf8)) }

    public func saveWholeFlash(_ flash: NORFlash) throws { try writeFile(flashPath, flash.bytes) }

    private func json<T: Encodable>(_ v: T) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try e.encode(v), as: UTF8.self) + "\n"
    }

    private func readFile(_ path: String, limit: InputLimit = .deviceState) throws -> [UInt8] {
        do { return try BoundedFile.read(path, limit: limit) } catch {
            throw DeviceError.stateDamaged(path, error.reason == .missing ? "file is missing" : error.diagnostic.message)
        }
    }

    /// Atomic replace through ``AtomicFile``, mode 0600 (efuse.bin holds keys; the flash holds
    /// firmware and, in plaintext mode, secrets).
    private func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        do { try AtomicFile.write(bytes, to: path, mode: Self.stateMode) } catch {
            throw DeviceError.io(path, error.diagnostic.message)
        }
    }

    /// Mode of every state file.
    public static let stateMode: mode_t = 0o600

    /// Removes what a killed writer left in the folder (``AtomicFile`` temporaries whose process
    /// is gone, Foundation's `.dat.nosync*` copies from older versions) and makes the state files
    /// 0600. Called when a device folder is opened. Returns the names removed.
    @discardableResult
    public func removeLeftovers() -> [String] {
        var removed: [String] = []
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where AtomicFile.isLeftover(name) || name.hasPrefix(".dat.nosync") {
            if unlink(directory + "/" + name) == 0 { removed.append(name) }
        }
        for path in [descriptionPath, flashPath, efusePath, statsPath] {
            var info = stat()
            if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_mode & 0o077 != 0 {
                _ = chmod(path, Self.stateMode)
            }
        }
        return removed.sorted()
    }
}
