import ESPCore
import Foundation

/// A flasher stub in esptool's JSON format: base64 `text` loaded at `text_start`, optional
/// base64 `data` at `data_start`, and the `entry` point.
public struct StubImage: Sendable, Equatable {
    public var text: [UInt8]
    public var textStart: UInt32
    public var data: [UInt8]
    public var dataStart: UInt32
    public var entry: UInt32
    public var source: String

    public init(text: [UInt8], textStart: UInt32, data: [UInt8], dataStart: UInt32, entry: UInt32, source: String) {
        self.text = text
        self.textStart = textStart
        self.data = data
        self.dataStart = dataStart
        self.entry = entry
        self.source = source
    }

    /// Parses the JSON; throws ``FlasherError/stubInvalid`` with the reason.
    public static func parse(json: [UInt8], source: String) throws -> StubImage {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            throw FlasherError.stubInvalid(source, "not a JSON object")
        }
        func number(_ k: String) throws -> UInt32 {
            guard let n = obj[k] as? NSNumber, n.int64Value >= 0, n.int64Value <= Int64(UInt32.max) else {
                throw FlasherError.stubInvalid(source, "missing or bad '\(k)'")
            }
            return UInt32(n.int64Value)
        }
        guard let t = obj["text"] as? String, let text = Data(base64Encoded: t), !text.isEmpty else {
            throw FlasherError.stubInvalid(source, "missing or bad base64 'text'")
        }
        var data: [UInt8] = []
        var dataStart: UInt32 = 0
        if let d = obj["data"] as? String {
            guard let bytes = Data(base64Encoded: d) else { throw FlasherError.stubInvalid(source, "bad base64 'data'") }
            data = [UInt8](bytes)
            dataStart = try number("data_start")
        }
        return StubImage(text: [UInt8](text), textStart: try number("text_start"), data: data, dataStart: dataStart,
                         entry: try number("entry"), source: source)
    }

    /// The path of a stub found by ``StubLocator`` (nil when none is installed); see there for the order.
    public static func locate(chip: String = "esp32") -> String? {
        StubLocator.search(chip: chip).found?.path
    }
}
