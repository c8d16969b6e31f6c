"""The generated interfaces import and carry what the nodes rely on."""

import math

from dyn_dnn_ros_interfaces.msg import (
    ClassificationResult,
    HardwareAvailability,
    OperatingPoint,
    TranslationRequest,
    TranslationResult,
)
from dyn_dnn_ros_interfaces.srv import ForceOperatingPoint, ListOperatingPoints, SetLatencyBudget


def test_messages_have_the_documented_fields():
    availability = HardwareAvailability(cpu_quota=math.nan, usable_threads=2,
                                        unavailable=['cpufreq'])
    assert math.isnan(availability.cpu_quota)
    assert availability.unavailable == ['cpufreq']
    request = TranslationRequest(id='r1', text='Open file')
    result = TranslationResult(id=request.id, status=TranslationResult.STATUS_DROPPED)
    assert result.status == 3 and TranslationResult.STATUS_TRUNCATED == 1
    assert ClassificationResult.STATUS_BAD_ENCODING == 1
    point = OperatingPoint(name='a', measured_threads=[1, 2], measured_latency_ms=[9.0, 5.0])
    assert list(point.measured_threads) == [1, 2]


def test_services_have_request_and_response():
    assert SetLatencyBudget.Request(target='translation', budget_ms=50.0).budget_ms == 50.0
    assert SetLatencyBudget.Response(success=True, operating_point='a').operating_point == 'a'
    assert ListOperatingPoints.Response(points=[OperatingPoint(name='b')]).points[0].name == 'b'
    assert ForceOperatingPoint.Request(target='perception', name='').name == ''
