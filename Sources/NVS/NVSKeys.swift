import ESPCore

/// NVS encryption keys and the nvs_keys partition image that holds them.
///
/// Layout (4096 bytes): eky (32) ‖ tky (32) ‖ u32 LE CRC32(init 0xFFFFFFFF) of those 64 bytes ‖
/// 0xFF to the end — what `nvs_partition_gen generate-key` writes and what ESP-IDF reads.
public struct NVSKeys: Sendable, Equatable {
    /// XTS data key (eky) followed by XTS tweak key (tky).
    public let bytes: [UInt8]

    public static let imageSize = 4096

    /// From 64 raw key bytes.
    public init(raw: [UInt8]) throws(NVSError) {
        guard raw.count == 64 else {
            throw .invalidKeys("NVS keys are 64 bytes (eky ‖ tky), got \(raw.count)", hint: nil)
        }
        bytes = raw
    }

    /// From a key file: the first 64 bytes are the keys (as nvs_partition_gen `--inputkey` reads
    /// them). When the file is a full nvs_keys image, its CRC is checked too.
    public init(file: [UInt8]) throws(NVSError) {
        guard file.count >= 64 else {
            throw .invalidKeys("the key file has \(file.count) bytes; it needs at least 64 (eky ‖ tky)",
                               hint: "create one with `espforge nvs keygen -o keys.bin`")
        }
        let raw = Array(file[0..<64])
        if raw.allSatisfy({ $0 == 0xFF }) {
            throw .invalidKeys("the key file is blank (all 0xFF): an uninitialised nvs_keys partition",
                               hint: "create keys with `espforge nvs keygen -o keys.bin`")
        }
        if file.count >= 68 {
            let stored = file[64..<68].loadLE(UInt32.self)
            if stored != NVSFormat.crc(raw) {
                throw .invalidKeys("the key file's CRC does not match its keys (corrupt nvs_keys image?)",
                                   hint: "the CRC at byte 64 must be CRC32 of the first 64 bytes")
            }
        }
        bytes = raw
    }

    /// The 4096-byte nvs_keys partition image.
    public var image: [UInt8] {
        var out = [UInt8](repeating: 0xFF, count: Self.imageSize)
        for i in 0..<64 { out[i] = bytes[i] }
        out.storeLE(NVSFormat.crc(bytes), at: 64)
        return out
    }

    /// Fresh keys from a cryptographically secure generator (the system RNG by default).
    public static func generate<R: RandomNumberGenerator>(using rng: inout R) -> NVSKeys {
        var raw = [UInt8](repeating: 0, count: 64)
        for i in stride(from: 0, to: 64, by: 8) {
            let v = rng.next()
            for j in 0..<8 { raw[i + j] = UInt8((v >> (8 * UInt64(j))) & 0xFF) }
        }
        // 64 bytes from a CSPRNG are never invalid; the init cannot fail.
        return (try? NVSKeys(raw: raw)) ?? NVSKeys(unchecked: raw)
    }

    public static func generate() -> NVSKeys {
        var rng = SystemRandomNumberGenerator()
        return generate(using: &rng)
    }

    private init(unchecked raw: [UInt8]) { bytes = raw }
}
