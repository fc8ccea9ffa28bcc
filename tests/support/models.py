from dataclasses import dataclass, field
from paglets import Paglet, PagletState, Message

@dataclass
class CounterState(PagletState):
    count: int = 0
    log: list[str] = field(default_factory=list)

class Counter(Paglet[CounterState]):
    State = CounterState
    def on_creation(self, event):
        self.state.log.append("creation")
    def on_activation(self, event):
        self.state.log.append("activation:" + event.reason)
    def handle_message(self, m: Message):
        if m.kind == "add":
            self.state.count += m.get_arg("n", 1)
            return self.state.count
        if m.kind == "fwd":
            nxt = m.get_arg("next")
            if nxt:
                return self.send(nxt[0], Message("fwd", {"next": nxt[1:]})) + 1
            return 0
        if m.kind == "self":
            return self.send(self.agent_id, Message("add", {"n": 10}))
        return self.not_handled()
