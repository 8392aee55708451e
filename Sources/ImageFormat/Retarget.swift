import Crypto
import ESPCore

/// New flash parameters for an image header; nil keeps the current value.
public struct FlashParameters: Sendable, Equatable {
    public var mode: String?
    public var frequency: String?
    public var size: String?
    public init(mode: String? = nil, frequency: String? = nil, size: String? = nil) {
        self.mode = mode
        self.frequency = frequency
        self.size = size
    }
}

public enum ImageRetarget {
    /// Rewrites header bytes 2..3 (flash mode, size and frequency) of an unsigned image and
    /// recomputes the appended SHA-256. The checksum covers only segment data, so it stays.
    ///
    /// Refuses an image with a Secure Boot V2 signature sector (the signature covers the header),
    /// or with other non-0xFF data after the image, unless `stripSignature` is set: then
    /// everything after the image proper (0xFF padding and the signature) is dropped. Trailing
    /// 0xFF padding of an unsigned image is kept.
    public static func retarget(_ bytes: [UInt8], parameters p: FlashParameters, stripSignature: Bool) throws(ImageError) -> [UInt8] {
        let image = try ESPImage(bytes)
        guard let chip = image.chip else { throw .unknownChip(id: image.chipID) }
        guard image.checksumValid else {
            throw .corruptInput("stored checksum \(hex(image.storedChecksum)) does not match the computed \(hex(image.computedChecksum))",
                                offset: image.checksumOffset)
        }
        if image.digestValid == false {
            throw .corruptInput("appended SHA-256 does not match the image contents", offset: image.checksumOffset + 1)
        }
        var out = bytes
        if image.imageEnd < bytes.count {
            if stripSignature {
                out = Array(bytes[0..<image.imageEnd])
            } else if image.hasSignatureSector {
                throw .signedImage(sectorOffset: image.signatureSectorOffset)
            } else if let firstOther = bytes[image.imageEnd...].firstIndex(where: { $0 != 0xFF }) {
                throw .trailingData(offset: firstOther)
            }
        }
        var mode = image.flashModeCode
        var sizeCode = image.flashSizeCode
        var freqCode = image.flashFrequencyCode
        if let m = p.mode {
            guard let c = chip.flashMode(named: m) else {
                throw .unknownParameter(kind: "flash mode", value: m, allowed: chip.flashModes.map(\.name))
            }
            mode = c.code
        }
        if let s = p.size {
            guard let c = chip.flashSize(named: s) else {
                throw .unknownParameter(kind: "flash size", value: s, allowed: chip.flashSizes.map(\.name))
            }
            sizeCode = c.code
        }
        if let f = p.frequency {
            guard let c = chip.flashFrequency(named: f) else {
                throw .unknownParameter(kind: "flash frequency", value: f, allowed: chip.flashFrequencies.map(\.name))
            }
            freqCode = c.code
        }
        out[2] = mode
        out[3] = sizeCode | freqCode
        if image.hashAppended {
            let end = image.checksumOffset + 1
            let digest = Array(SHA256.hash(data: out[0..<end]))
            out.replaceSubrange(end..<(end + 32), with: digest)
        }
        return out
    }
}
