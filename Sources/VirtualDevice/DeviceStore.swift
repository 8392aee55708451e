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
        let descBytes = try readFile(descriptionPath)
        let desc: DeviceDescription
        do { desc = try JSONDecoder().decode(DeviceDescription.self, from: Data(descBytes)) } catch {
            throw DeviceError.stateDamaged(descriptionPath, "not a device description (\(error))")
        }
        let flash = try readFile(flashPath)
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
        let fd = open(flashPath, O_WRONLY)
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

    private func readFile(_ path: String) throws -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: path) else {
            throw DeviceError.stateDamaged(path, "file is missing or unreadable")
        }
        return [UInt8](d)
    }

    /// Atomic replace: temporary file + rename.
    private func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw DeviceError.io(path, "cannot create: \(String(cString: strerror(errno)))") }
        var ok = true
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count, let base = raw.baseAddress {
                let n = write(fd, base + done, raw.count - done)
                if n <= 0 { ok = false; break }
                done += n
            }
        }
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw DeviceError.io(path, "cannot write: \(String(cString: strerror(errno)))")
        }
    }
}
