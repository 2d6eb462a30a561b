package live

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/zzim/zzim/system/das"
)

// TestStatsExportsBusinessArrays: das keeps its queue depths and
// rejections in arrays indexed by business; /metrics must carry one series
// per business (queue depths and rejections), not drop them.
func TestStatsExportsBusinessArrays(t *testing.T) {
	var st das.Stats
	st.QueueDepth[1] = 7 // contact
	st.Rejected[0] = 3   // message
	st.RejectedTotal = 3
	ch := make(chan prometheus.Metric, 256)
	emitStruct(ch, "das", "das-0", "", reflect.ValueOf(st))
	close(ch)
	got := map[string]float64{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		name := m.Desc().String()
		name = name[strings.Index(name, `"`)+1:]
		name = name[:strings.Index(name, `"`)]
		var labels []string
		for _, l := range pb.GetLabel() {
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(labels)
		got[name+"{"+strings.Join(labels, ",")+"}"] = pb.GetUntyped().GetValue()
	}
	want := map[string]float64{
		"zzim_das_queue_depth{business=contact,node=das-0}": 7,
		"zzim_das_queue_depth{business=message,node=das-0}": 0,
		"zzim_das_rejected{business=message,node=das-0}":    3,
		"zzim_das_rejected{business=system,node=das-0}":     0,
		"zzim_das_rejected_total{node=das-0}":               3,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}
