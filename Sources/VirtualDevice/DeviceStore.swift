import EFuse
import ESPCore
import Foundation

/// The files of a device state folder:
///
/// | file | contents |
/// |---|---|
/// | `device.json` | ``DeviceDescription``: chip, revision, package, MAC, flash size and JEDEC id |
/// | `flash.bin` | the whole NOR flash, byte for byte (erased = 0xFF) |
/// | `efuse.bin` | ESP32: programmed eFuse words, BLOCK0 (7 words) then BLOCK1–3 (8 words each), u32 LE. ESP32-S3/C3: the eFuse controller's register space in `espefuse --virt --path-efuse-file` format (``EFuseVirtualFile``), i.e. what the read registers show (read-protected blocks as zero) |
/// | `efuse-protected.bin` | ESP32-S3/C3 only, when a block is read-protected: the hidden blocks' fuses in the same format (everything else zero) |
/// | `stats.json` | ``DeviceStats``: traffic, operations, virtual time, injected faults |
///
/// Flash is written back incrementally (dirty 4 KiB sectors) so state survives a killed server.
public struct DeviceStore: Sendable {
    public let directory: String
    public init(directory: String) { self.directory = directory }

    public var descriptionPath: String { directory + "/device.json" }
    public var flashPath: String { directory + "/flash.bin" }
    public var efusePath: String { directory + "/efuse.bin" }
    public var protectedEFusePath: String { directory + "/efuse-protected.bin" }
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
        try saveEFuses(of: device)
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
        var efuses = EFuseArray(layout: .esp32)
        var cells: EFuseBlockWords?
        if let chip = VirtualChip.named(desc.chip) {
            cells = try loadCells(efuseBytes, chip: chip)
        } else {
            guard desc.chip == "esp32" else { throw DeviceError.stateDamaged(descriptionPath, "unknown chip '\(desc.chip)'") }
            do { efuses = try EFuseArray(layout: .esp32, bytes: efuseBytes) } catch {
                throw DeviceError.stateDamaged(efusePath, error.diagnostic.message)
            }
        }
        var stats = DeviceStats()
        if let s = try? readFile(statsPath), let decoded = try? JSONDecoder().decode(DeviceStats.self, from: Data(s)) {
            stats = decoded
        }
        return Device(description: desc, flash: NORFlash(contents: flash), efuses: efuses, cells: cells, stats: stats)
    }

    /// The fuses of an S3/C3: `efuse.bin` as the read registers show them, with the blocks whose
    /// RD_DIS bit is burned taken from `efuse-protected.bin` (zero when that file is missing).
    private func loadCells(_ bytes: [UInt8], chip: VirtualChip) throws -> EFuseBlockWords {
        let map = chip.efuseMap
        var cells: EFuseBlockWords
        do { cells = try EFuseVirtualFile.decode(bytes, map: map, name: efusePath) } catch {
            throw DeviceError.stateDamaged(efusePath, error.diagnostic.message)
        }
        let hiddenBlocks = hidden(cells, map: map)
        guard !hiddenBlocks.isEmpty, FileManager.default.fileExists(atPath: protectedEFusePath) else { return cells }
        let protectedBytes = try readFile(protectedEFusePath)
        let protectedWords: EFuseBlockWords
        do { protectedWords = try EFuseVirtualFile.decode(protectedBytes, map: map, name: protectedEFusePath) } catch {
            throw DeviceError.stateDamaged(protectedEFusePath, error.diagnostic.message)
        }
        for b in hiddenBlocks {
            for w in 0..<map.blockWordCounts[b] { cells.setWord(b, w, protectedWords.word(b, w)) }
        }
        return cells
    }

    /// Blocks whose RD_DIS bit is burned.
    private func hidden(_ cells: EFuseBlockWords, map: EFuseFieldMap) -> [Int] {
        let rdDis = map.field(named: "RD_DIS").map { cells.integer($0) } ?? 0
        return map.blockReadProtectBits.enumerated().compactMap { b, bit in
            bit.map { rdDis & (1 << UInt64($0)) != 0 ? b : nil } ?? nil
        }
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

    /// Writes the device's eFuses: the ESP32 array, or for an S3/C3 `efuse.bin` (read registers'
    /// view, espefuse's virtual-file format) and, when blocks are read-protected,
    /// `efuse-protected.bin` with their fuses.
    public func saveEFuses(of device: Device) throws {
        let files = efuseFiles(of: device)
        try writeFile(efusePath, files.efuse)
        guard let hidden = files.protected else {
            if FileManager.default.fileExists(atPath: protectedEFusePath) { _ = unlink(protectedEFusePath) }
            return
        }
        try writeFile(protectedEFusePath, hidden)
    }

    /// The contents of `efuse.bin` and `efuse-protected.bin` (nil: no block is read-protected)
    /// as ``saveEFuses(of:)`` writes them (for callers that save several files as one transaction).
    public func efuseFiles(of device: Device) -> (efuse: [UInt8], protected: [UInt8]?) {
        guard let chip = device.chip, let cells = device.cells else { return (device.efuses.bytes, nil) }
        let map = chip.efuseMap
        let shown = EFuseVirtualFile.encode(FieldMapController.readable(cells, map: map), map: map)
        let hiddenBlocks = hidden(cells, map: map)
        guard !hiddenBlocks.isEmpty else { return (shown, nil) }
        var protectedWords = EFuseBlockWords(map: map)
        for b in hiddenBlocks {
            for w in 0..<map.blockWordCounts[b] { protectedWords.setWord(b, w, cells.word(b, w)) }
        }
        return (shown, EFuseVirtualFile.encode(protectedWords, map: map))
    }

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
        for path in [descriptionPath, flashPath, efusePath, protectedEFusePath, statsPath] {
            var info = stat()
            if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_mode & 0o077 != 0 {
                _ = chmod(path, Self.stateMode)
            }
        }
        return removed.sorted()
    }
}
