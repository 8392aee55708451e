import CAES
import ESPCore

/// Data destined for one flash offset.
public struct FlashRegion: Sendable, Hashable {
    public var address: Int
    public var data: [UInt8]
    /// What it is (`bootloader`, a partition name …), for messages.
    public var label: String?

    public init(address: Int, data: [UInt8], label: String? = nil) {
        self.address = address
        self.data = data
        self.label = label
    }

    public var end: Int { address + data.count }
}

/// Encrypts and decrypts flash contents for one chip and key, byte-identical to espsecure.
///
/// - ESP32 scheme: address any multiple of 16; one AES-256 key per 32-byte flash block.
/// - XTS-AES: address any multiple of 16 (units are 128-byte aligned; partial units are handled
///   exactly, as each 16-byte block of a unit is independent).
/// Data length must be a non-zero multiple of 16 and the data must lie below 4 GiB.
public struct FlashCipher: Sendable {
    public let key: FlashEncryptionKey
    /// The ESP32 key tweak (nil for XTS-AES).
    public let tweak: ESP32FlashTweak?
    /// Which AES implementation to use (tests compare them; normal use: `.automatic`).
    public var backend: AESBackend

    private let baseKey: UInt256
    private let xtsDataKey: caes_schedule
    private let xtsTweakKey: caes_schedule

    /// Required alignment of a start address.
    public static let addressAlignment = 16

    /// A cipher for `chip`, checking that the key length is one the chip's eFuses can hold.
    /// `flashCryptConfig` (0x0…0xF) is used by the ESP32 scheme only.
    public init(chip: ChipSpec, key: [UInt8], flashCryptConfig: Int = 0xF, backend: AESBackend = .automatic) throws {
        try self.init(key: FlashEncryptionKey(key, chip: chip), flashCryptConfig: flashCryptConfig, backend: backend)
    }

    public init(key: FlashEncryptionKey, flashCryptConfig: Int = 0xF, backend: AESBackend = .automatic) throws {
        self.key = key
        self.backend = backend
        var dataKey = caes_schedule(), tweakKey = caes_schedule()
        switch key.scheme {
        case .esp32Tweak:
            tweak = try ESP32FlashTweak(flashCryptConfig: flashCryptConfig)
            baseKey = UInt256(bigEndian: key.material)
        case .xtsAES:
            tweak = nil
            baseKey = .zero
            let half = key.material.count / 2
            let k1 = Array(key.material[0..<half]), k2 = Array(key.material[half...])
            k1.withUnsafeBufferPointer { _ = caes_expand_key(&dataKey, $0.baseAddress, $0.count, backend.code) }
            k2.withUnsafeBufferPointer { _ = caes_expand_key(&tweakKey, $0.baseAddress, $0.count, backend.code) }
        }
        xtsDataKey = dataKey
        xtsTweakKey = tweakKey
    }

    /// Plaintext → what is stored in flash at `address`.
    public func encrypt(_ data: [UInt8], at address: Int) throws -> [UInt8] {
        try apply(.encrypt, to: data, at: address)
    }

    /// Flash contents read from `address` → plaintext.
    public func decrypt(_ data: [UInt8], at address: Int) throws -> [UInt8] {
        try apply(.decrypt, to: data, at: address)
    }

    public func apply(_ direction: FlashCipherDirection, to data: [UInt8], at address: Int) throws -> [UInt8] {
        try Self.validate(address: address, length: data.count)
        let n = data.count
        return [UInt8](unsafeUninitializedCapacity: n) { out, initialized in
            data.withUnsafeBufferPointer { input in
                if let src = input.baseAddress, let dst = out.baseAddress {
                    run(direction, from: src, to: dst, count: n, address: address)
                }
            }
            initialized = n
        }
    }

    /// Encrypts or decrypts `buffer` in place (no copy: for large images and memory-mapped files).
    public func apply(_ direction: FlashCipherDirection, inPlace buffer: UnsafeMutableRawBufferPointer, at address: Int) throws {
        try Self.validate(address: address, length: buffer.count)
        let bytes = buffer.bindMemory(to: UInt8.self)
        guard let base = bytes.baseAddress else { return }
        run(direction, from: base, to: base, count: bytes.count, address: address)
    }

    /// Reads `source`, writes the result to `destination` (same length; the two may be the same
    /// memory). For memory-mapped input files and preallocated output.
    public func apply(_ direction: FlashCipherDirection, from source: UnsafeRawBufferPointer,
                      to destination: UnsafeMutableRawBufferPointer, at address: Int) throws {
        try Self.validate(address: address, length: source.count)
        guard destination.count == source.count else {
            throw FlashEncryptionError.outputSizeMismatch(input: source.count, output: destination.count)
        }
        guard let s = source.baseAddress, let d = destination.baseAddress else { return }
        let n = source.count
        let overlapping = s < UnsafeRawPointer(d) + n && UnsafeRawPointer(d) < s + n
        if overlapping && s != UnsafeRawPointer(d) {
            // Partially overlapping buffers: work on a copy of the input.
            let copy = [UInt8](source)
            try copy.withUnsafeBytes { try apply(direction, from: $0, to: destination, at: address) }
            return
        }
        run(direction, from: s.assumingMemoryBound(to: UInt8.self), to: d.bindMemory(to: UInt8.self, capacity: n),
            count: n, address: address)
    }

    /// `src` and `dst` are either the same or disjoint; inputs already validated.
    private func run(_ direction: FlashCipherDirection, from src: UnsafePointer<UInt8>, to dst: UnsafeMutablePointer<UInt8>,
                     count n: Int, address: Int) {
        switch key.scheme {
        case .esp32Tweak: esp32(from: src, to: dst, count: n, address: address, direction: direction)
        case .xtsAES: xts(from: src, to: dst, count: n, address: address, direction: direction)
        }
    }

    /// Encrypts (or decrypts) every region of a flash plan; regions must not overlap. The result
    /// has the same order and labels.
    public func apply(_ direction: FlashCipherDirection, to plan: [FlashRegion]) throws -> [FlashRegion] {
        try Self.validate(plan)
        return try plan.map { region in
            var r = region
            r.data = try apply(direction, to: region.data, at: region.address)
            return r
        }
    }

    /// Checks a start address and length against the rules every scheme shares.
    public static func validate(address: Int, length: Int) throws {
        guard address >= 0, address % addressAlignment == 0 else {
            throw FlashEncryptionError.misalignedAddress(address: address, alignment: addressAlignment)
        }
        guard length > 0 else { throw FlashEncryptionError.emptyData }
        guard length % 16 == 0 else { throw FlashEncryptionError.lengthNotMultipleOf16(length: length) }
        guard address <= (1 << 32) - length else {
            throw FlashEncryptionError.addressOutOfRange(address: address, length: length)
        }
    }

    /// Checks every region and that no two overlap.
    public static func validate(_ plan: [FlashRegion]) throws {
        for region in plan { try validate(address: region.address, length: region.data.count) }
        let sorted = plan.sorted { $0.address < $1.address }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.address < a.end {
            throw FlashEncryptionError.overlappingRegions(first: a.address, second: b.address)
        }
    }

    // MARK: ESP32 scheme

    /// Number of per-block keys derived per call into the AES core (16 KiB of keys).
    private static let keyBatch = 512

    private func esp32(from src: UnsafePointer<UInt8>, to dst: UnsafeMutablePointer<UInt8>, count n: Int,
                       address: Int, direction: FlashCipherDirection) {
        guard let tweak else { return }
        let lead = address & 31
        let firstBlock = UInt64(address >> 5)
        let totalBlocks = (lead + n + 31) / 32
        let keys = UnsafeMutableRawPointer.allocate(byteCount: 32 * Self.keyBatch, alignment: 64)
        defer {
            keys.initializeMemory(as: UInt8.self, repeating: 0, count: 32 * Self.keyBatch)
            keys.deallocate()
        }
        let keyBytes = keys.bindMemory(to: UInt8.self, capacity: 32 * Self.keyBatch)
        // To encrypt, the ESP32 runs the AES inverse cipher (and the forward cipher to decrypt).
        let inverse: Int32 = direction == .encrypt ? 1 : 0
        var block = 0
        var position = 0
        while block < totalBlocks {
            let count = min(Self.keyBatch, totalBlocks - block)
            tweak.writeBlockKeys(base: baseKey, firstBlock: firstBlock + UInt64(block), count: count, to: keys)
            let batchLead = block == 0 ? lead : 0
            let bytes = min(count * 32 - batchLead, n - position)
            caes_esp32_blocks(keyBytes, batchLead, src + position, dst + position, bytes, inverse, backend.code)
            position += bytes
            block += count
        }
    }

    // MARK: XTS-AES

    /// Data units per call into the AES core.
    private static let unitBatch = 1024

    private func xts(from src: UnsafePointer<UInt8>, to dst: UnsafeMutablePointer<UInt8>, count n: Int,
                     address: Int, direction: FlashCipherDirection) {
        let decrypt: Int32 = direction == .decrypt ? 1 : 0
        let tweaks = UnsafeMutableRawPointer.allocate(byteCount: 16 * Self.unitBatch, alignment: 64)
        tweaks.initializeMemory(as: UInt8.self, repeating: 0, count: 16 * Self.unitBatch)
        defer { tweaks.deallocate() }
        let tweakBytes = tweaks.bindMemory(to: UInt8.self, capacity: 16 * Self.unitBatch)
        // The tweak of a unit: its flash address (little-endian u32) followed by 12 zero bytes.
        func setTweak(_ index: Int, unitAddress: Int) {
            tweaks.storeBytes(of: UInt32(truncatingIfNeeded: unitAddress).littleEndian, toByteOffset: 16 * index, as: UInt32.self)
        }
        let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: 128)
        defer { scratch.deallocate() }
        withUnsafePointer(to: xtsDataKey) { k1 in
            withUnsafePointer(to: xtsTweakKey) { k2 in
                var position = 0
                while position < n {
                    let flash = address + position
                    let inUnit = flash & 127
                    let take = min(128 - inUnit, n - position)
                    if inUnit == 0 && take == 128 {
                        // A run of whole units straight from input to output.
                        let units = min((n - position) / 128, Self.unitBatch)
                        for u in 0..<units { setTweak(u, unitAddress: flash + 128 * u) }
                        caes_xts_units(k1, k2, tweakBytes, src + position, dst + position, units, decrypt, backend.code)
                        position += 128 * units
                    } else {
                        // A partial unit: zero-pad to the unit, process, keep the covered part
                        // (exact: the 16-byte blocks of a unit are independent).
                        scratch.initialize(repeating: 0, count: 128)
                        (scratch + inUnit).update(from: src + position, count: take)
                        setTweak(0, unitAddress: flash - inUnit)
                        caes_xts_units(k1, k2, tweakBytes, scratch, scratch, 1, decrypt, backend.code)
                        (dst + position).update(from: scratch + inUnit, count: take)
                        position += take
                    }
                }
            }
        }
    }
}
