import ESPCore
import Foundation
import ProductionLine
import Provisioning

/// Writes what ``StationConsole`` renders to the terminal: a live table redrawn every half
/// second (and on each event), one line per event when piped, or one JSON event per line.
final class StationView: @unchecked Sendable {
    typealias Mode = StationConsole.Mode
    let mode: Mode
    private let lock = NSLock()
    private var screen = StationConsole.LiveScreen()
    private var lastDraw = Date.distantPast
    private var timer: DispatchSourceTimer?
    private var notes: [String] = []

    init(mode: Mode) { self.mode = mode }

    func start(_ station: Station) {
        write(StationConsole.startLines(mode, station.snapshot()))
        guard mode == .live else { return }
        let t = DispatchSource.makeTimerSource(queue: .global())
        t.schedule(deadline: .now() + 0.5, repeating: 0.5)
        t.setEventHandler { [weak self, weak station] in
            guard let self, let station else { return }
            self.draw(station.snapshot(), force: true)
        }
        t.resume()
        timer = t
        draw(station.snapshot(), force: true)
    }

    func note(_ text: String) {
        guard mode == .live else { return write([StationConsole.noteLine(mode, text)]) }
        lock.withLock { notes.append(text); if notes.count > 3 { notes.removeFirst() } }
    }

    func show(_ e: StationEvent, _ station: Station) {
        if mode == .live { draw(station.snapshot(), force: e.event != .step) } else { write(StationConsole.eventLines(mode, e)) }
    }

    func finish(_ s: StationSnapshot) {
        timer?.cancel()
        if mode == .live { draw(s, force: true) }
        write(StationConsole.finishLines(mode, s))
    }

    private func draw(_ s: StationSnapshot, force: Bool) {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        if !force, now.timeIntervalSince(lastDraw) < 0.1 { return }
        lastDraw = now
        FileHandle.standardOutput.write(Data(screen.frame(StationConsole.table(s, now: now, notes: notes)).utf8))
    }

    private func write(_ lines: [String]) {
        lock.lock(); defer { lock.unlock() }
        for text in lines { FileHandle.standardOutput.write(Data((text + "\n").utf8)) }
    }
}
