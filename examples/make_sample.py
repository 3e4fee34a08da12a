"""Write the bundled sample inputs: examples/sample/news_zh.jsonl and wiki_zh_tw.jsonl.

All paragraphs below are original text written for this project. The news file is
simplified Chinese; the wiki file is written here in simplified Chinese and turned
into Taiwan-style traditional characters with OpenCC ``s2twp`` (the pipeline turns
it back with ``t2s``). Besides ordinary paragraphs, both files hold records that are
bad or duplicated on purpose; ``DELIBERATE`` lists them and examples/README.md says
what should happen to each.

Run from anywhere; the output is deterministic:

    python examples/make_sample.py
"""

from __future__ import annotations

import json
from pathlib import Path

import opencc

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"

# --- simplified news-like paragraphs -------------------------------------------------

NEWS = {
    "weather": (
        "本市气象台今天上午发布消息，受冷空气影响，未来三天全市将出现明显降温，最低气温可能降到零下5度左右。"
        "气象专家提醒市民及时添加衣物，早晚出行注意道路结冰，老人和儿童尽量减少户外活动。"
        "据介绍，这次降温过程结束后，气温将在下周初逐步回升。"
    ),
    "subway": (
        "城市地铁三号线延长段昨天正式开通运营，新增车站八座，线路全长约十二公里。"
        "开通首日，不少市民专程前来体验，车厢内秩序良好。运营公司表示，早晚高峰期间列车最小间隔为四分钟，"
        "今后还将根据客流变化调整运行图。沿线居民说，以前进城要换乘两次公交，现在坐地铁半小时就能到达市中心。"
    ),
    "school": (
        "新学期开学第一天，城东小学的操场上格外热闹。一年级的新生在老师带领下参观教室、图书馆和食堂，"
        "高年级学生则忙着布置黑板报。校长在开学典礼上说，学校今年新开设了编程和科学实验课程，"
        "希望孩子们保持好奇心，多动手，多提问。"
    ),
    "marathon": (
        "周日上午，一年一度的城市马拉松在滨江公园鸣枪开跑，来自国内外的两万多名选手参加了比赛。"
        "全程马拉松男子组冠军的成绩为2小时11分，女子组冠军由一名年轻的本地选手获得。"
        "赛道沿线设置了二十多个补给站，数百名志愿者为选手提供饮用水、香蕉和医疗服务。"
    ),
    "gpu": (
        "随着人工智能模型越来越大，训练所需的计算资源也在快速增长。一位研究人员介绍，"
        "他们团队最近用几十块GPU训练了一个中文语言模型，整个过程持续了两周。为了节省成本，"
        "他们先用Python编写了数据清洗脚本，去掉重复和质量较低的文本，再把剩下的语料切分成词语，最后交给模型学习。"
    ),
    "rice": (
        "今年春季雨水充足，南方多个省份的早稻长势良好。农业部门的技术人员深入田间地头，指导农民科学施肥和防治病虫害。"
        "一位种了三十年水稻的老农说，现在用上了无人机喷洒农药，过去要干一整天的活，如今一个多小时就能完成，既省力又均匀。"
    ),
    "library": (
        "市图书馆新馆经过两年建设，将于下月一日对外开放。新馆共有六层，藏书量预计超过一百万册，"
        "并设有儿童阅读区、自习室和多功能报告厅。读者凭身份证即可免费办理借书证，还可以通过手机预约座位。"
        "馆方表示，周末和节假日也将照常开放。"
    ),
    "garbage": (
        "从本月起，全市所有小区开始实行垃圾分类，居民需要把生活垃圾分成可回收物、厨余垃圾、有害垃圾和其他垃圾四类。"
        "社区工作人员在投放点旁边耐心讲解，还给每户居民发放了分类指南。"
        "不少居民表示，刚开始有点不习惯，但坚持几周以后就慢慢适应了。"
    ),
    "football": (
        "在昨晚结束的一场联赛中，主队凭借下半场的两个进球，以二比一战胜了远道而来的客队。"
        "比赛开始后，客队率先打破僵局，主队一度陷入被动。中场休息时，主教练调整了阵型，换上两名年轻前锋，"
        "这一变化很快收到效果。赛后，主教练称赞队员们顶住了压力。"
    ),
    "railway": (
        "一条连接东部沿海城市和西部山区的高速铁路近日完成全线铺轨，预计明年年底通车。"
        "线路设计时速为350公里，建成后两地之间的旅行时间将从十个小时缩短到三个小时左右。"
        "沿线不少山区县将第一次通上高铁，当地群众对此充满期待。"
    ),
    "payment": (
        "在许多城市，用手机付款已经成为日常生活的一部分。买菜、坐公交、交水电费，只要打开手机扫一扫就能完成，"
        "出门不带钱包的人越来越多。不过，也有一些老年人不太会使用智能手机，遇到只能扫码付款的场合常常感到为难。"
        "为此，一些社区开办了免费培训班，由志愿者一对一地教老人如何绑定银行卡、如何查看账单，"
        "并提醒他们保护好密码，警惕各种电信诈骗。一位参加培训的老人说，学会以后，自己去菜市场买菜方便多了。"
    ),
    "museum": (
        "省博物馆本周推出一个关于古代丝绸之路的特别展览，展出文物两百多件，包括陶器、钱币、丝织品和古代地图。"
        "展览按照时间顺序分为四个部分，介绍了东西方之间商品、技术和思想的交流。"
        "为了方便参观者，博物馆还提供了中英文语音导览和线上虚拟展厅。"
    ),
    "rainstorm": (
        "受强降雨影响，昨天下午城区多条道路出现积水，部分公交线路临时绕行。"
        "市防汛部门立即启动应急响应，组织排水人员和抽水设备赶赴现场。"
        "截至晚上八点，主要路段的积水已基本排除，交通逐步恢复正常，没有接到人员伤亡的报告。"
    ),
    "majors": (
        "今年高考结束后，人工智能、数据科学等新兴专业受到许多考生和家长的关注。"
        "一所大学的招生负责人介绍，这些专业对数学基础要求较高，学生在入学后要学习线性代数、概率论和编程等课程。"
        "他建议考生在选择专业时，不仅要看热门程度，更要结合自己的兴趣和特长。"
    ),
    "ev": (
        "近年来，新能源汽车在国内市场的销量持续增长。走进一家汽车销售店，电动汽车已经占据了展厅的一大半。"
        "销售人员说，现在顾客最关心的问题是续航里程和充电是否方便。为了满足需求，"
        "城市里的公共充电桩数量也在不断增加，不少小区的停车场安装了充电设备。"
    ),
    "basketball": (
        "暑假期间，市体育中心举办了青少年篮球训练营，吸引了三百多名中小学生报名参加。"
        "训练营由专业教练授课，内容包括运球、传球、投篮和战术配合。一名十二岁的学员说，"
        "他每天早上七点就到球场练习，虽然很累，但是进步很快，还交到了不少新朋友。"
    ),
    "blossom": (
        "三月下旬，城西公园里的樱花陆续开放，吸引了大批市民和游客前来赏花拍照。"
        "为了保护花木，公园管理处在主要景点设置了护栏，并安排工作人员维持秩序。"
        "管理处负责人提醒游客，不要攀折花枝，也不要在草坪上乱扔垃圾，共同维护良好的游园环境。"
    ),
    "rocket": (
        "一枚运载火箭今天凌晨在发射中心点火升空，成功将三颗试验卫星送入预定轨道。"
        "这些卫星将主要用于空间环境探测和新技术验证。据介绍，这是今年以来该型号火箭的第五次发射，"
        "也是一箭多星技术的又一次实际应用。"
    ),
    "opensource": (
        "越来越多的软件开发者开始参与开源项目。他们把自己编写的代码公开发布在网络上，任何人都可以免费下载、使用和修改。"
        "一名程序员说，他最早只是给一个Python库提交了一个小小的错误修复，后来慢慢成为了这个项目的维护者之一。"
        "他认为，参与开源不仅能提高技术水平，还能结识世界各地的同行。"
    ),
    "prices": (
        "记者昨天走访了几家菜市场，发现近期蔬菜价格总体平稳，部分叶菜价格比上月略有下降。"
        "一位卖菜的摊主告诉记者，天气转暖以后，本地蔬菜大量上市，进货成本降低了，所以价格也就便宜了一些。"
        "不过，受运输成本影响，一些外地水果的价格仍然偏高。"
    ),
    "health": (
        "医生提醒，长时间坐在电脑前工作容易引起颈椎和腰部不适。建议上班族每工作一个小时就站起来活动五到十分钟，"
        "做一做伸展运动，也可以到窗边看看远处，让眼睛得到休息。"
        "此外，保持充足的睡眠和均衡的饮食，对预防慢性疾病同样重要。"
    ),
    "translation": (
        "机器翻译的质量在过去十年里有了明显提高。早期的系统主要依靠人工编写的规则，后来出现了基于统计的方法，"
        "如今大多数系统都采用神经网络。不过专家指出，机器翻译在处理成语、双关语和专业术语时仍然容易出错，"
        "重要的文件最好还是请专业译者进行审校。"
    ),
    "watertown": (
        "国庆假期，江南的一座古镇迎来了旅游高峰。小桥、流水、白墙黑瓦，吸引着来自全国各地的游客。"
        "镇上的老街两旁开满了茶馆、小吃店和手工艺品商店，空气中飘着桂花糕和酱鸭的香味。"
        "不少游客坐上摇橹的小船，在窄窄的河道里慢慢穿行，欣赏两岸的老房子。"
        "为了避免人员过于拥挤，景区实行了预约入园和限流措施，每天接待游客不超过两万人次。"
        "景区负责人表示，他们还增加了保洁人员和临时厕所，并在主要路口安排志愿者为游客指路。"
    ),
    "tutors": (
        "在老城区的一个社区里，有一支由退休教师组成的志愿服务队。每周六下午，他们都会在社区活动室为附近的中小学生"
        "免费辅导功课。队长王老师今年已经六十八岁了，她说，看到孩子们一点点进步，自己心里特别高兴，"
        "也觉得退休生活更加充实。"
    ),
    "datacenter": (
        "大型数据中心需要消耗大量电力，其中很大一部分用于服务器的散热。为了降低能耗，"
        "一些企业把数据中心建在气候凉爽的地区，利用自然冷空气给机房降温；"
        "还有一些企业尝试使用液体冷却技术，让冷却液直接流过处理器和GPU附近的散热板。"
    ),
    "pingpong": (
        "在刚刚结束的全国乒乓球锦标赛上，一名来自西南地区的十七岁小将连续击败多名老将，最终获得男子单打亚军。"
        "他在赛后接受采访时说，自己从六岁开始练球，每天训练五六个小时，"
        "这次比赛最大的收获是学会了在关键分上保持冷静。"
    ),
    "readingday": (
        "世界读书日当天，多所学校举办了形式多样的阅读活动。有的班级组织了图书交换会，同学们把读过的书带来和别人交换；"
        "有的学校邀请作家走进校园，和学生们分享写作的经验。一位语文老师说，培养阅读习惯要从小开始，"
        "家长以身作则也非常重要。"
    ),
    "ebike": (
        "交通管理部门近日开展了电动自行车安全整治行动，重点检查不戴头盔、闯红灯和逆向行驶等违法行为。"
        "执法人员在路口对违法骑车人进行劝导和教育，并向他们讲解交通安全知识。"
        "据统计，行动开展一周以来，市区主要路口的头盔佩戴率明显提高。"
    ),
    "meteors": (
        "天文爱好者请注意，今年的英仙座流星雨将在下周三夜间迎来高峰，每小时可能看到几十颗流星。"
        "专家建议，观测时最好选择远离城市灯光的空旷地点，不需要望远镜，用肉眼就可以欣赏。"
        "如果当晚天气晴朗、月光较弱，观测效果会更好。"
    ),
    "parcels": (
        "随着网上购物越来越普及，快递行业的业务量逐年增长。在一个大型物流分拣中心，记者看到一条条传送带不停运转，"
        "机器人根据包裹上的条形码自动把它们送到不同的区域。工作人员介绍，采用自动化设备以后，"
        "分拣效率提高了三倍，出错率也大大降低。"
    ),
    "springtea": (
        "清明前后是采摘春茶的好时节。在南方的一座茶山上，茶农们一大早就背着竹篓上山，把鲜嫩的芽叶一片片摘下来。"
        "采回的茶叶还要经过摊晾、杀青、揉捻和烘干等多道工序，才能制成香气浓郁的绿茶。"
        "一位老茶农说，做茶靠的是经验，火候差一点，味道就不一样了。"
    ),
    "coding": (
        "一些中学开始在信息技术课上教学生编写简单的程序。老师先用图形化工具讲解循环和条件判断等基本概念，"
        "再引导学生用Python完成一些小项目，比如计算班级的平均成绩，或者画出一张天气变化图。"
        "学生们说，看到自己写的代码真的运行起来，感觉很有成就感。"
    ),
    "skiing": (
        "冬天到了，北方的滑雪场迎来了一年中最热闹的季节。不少家长趁着周末带孩子学习滑雪。"
        "滑雪教练提醒初学者，上雪道之前一定要做好热身，戴好头盔和护具，先在初级雪道上练习基本动作，"
        "不要急于挑战难度较高的坡道。"
    ),
    "typhoon": (
        "今年第9号台风预计将于明天傍晚在东南沿海登陆，登陆时中心附近最大风力可达十二级。"
        "沿海各地已经提前转移了渔船和危险区域的人员，部分航班和列车停运。"
        "气象部门提醒公众，台风影响期间尽量不要外出，远离广告牌、大树和临时建筑。"
    ),
    "noodles": (
        "在一条老街的拐角处，有一家开了二十多年的面馆。店主每天凌晨四点起床熬汤，"
        "一碗牛肉面从最初的三块钱涨到现在的十五块钱，味道却一直没变。附近的老顾客说，"
        "来这里吃面已经成了生活的一部分，有时候出差在外，最想念的就是这一口汤。"
    ),
    "beach": (
        "一支由大学生组成的志愿者队伍上周末来到海边，开展沙滩清洁活动。短短两个小时，"
        "他们就捡到了塑料瓶、渔网碎片和烟头等各类垃圾一百多公斤。组织者说，希望通过这样的活动，"
        "让更多人意识到海洋塑料污染问题，从减少使用一次性塑料制品做起。"
    ),
    "concert": (
        "周五晚上，市音乐厅举办了一场特别的新年音乐会，演奏者全部是本地中学的学生。"
        "他们演奏了多首中外名曲，既有传统民乐，也有西方古典音乐。演出结束时，全场观众起立鼓掌。"
        "乐团指导老师说，孩子们为这场演出排练了整整三个月。"
    ),
    "pandas": (
        "野生动物保护区的工作人员最近通过红外相机拍到了一组珍贵的画面：一只大熊猫妈妈带着幼崽在竹林里觅食。"
        "研究人员表示，这说明保护区内的生态环境正在持续改善。近年来，保护区通过修建生态廊道，"
        "把原本分隔的栖息地连接起来，方便野生动物迁移和繁殖。"
    ),
}

# --- encyclopedic paragraphs (written simplified, stored as Taiwan traditional) ------

WIKI = {
    "moon": (
        "月球是地球唯一的天然卫星，它围绕地球运行一周大约需要27天。月球表面没有液态水，也几乎没有大气，"
        "因此昼夜温差非常大。人们在地球上看到的月相变化，是由于太阳、地球和月球三者相对位置不断改变造成的。"
    ),
    "yangtze": (
        "长江是中国最长的河流，全长约6300公里，发源于青藏高原，自西向东流经多个省份，最后在上海附近注入东海。"
        "长江流域气候温和，雨量充沛，自古以来就是重要的农业区。沿江分布着许多大城市，"
        "长江的航运对区域经济发展起着重要作用。"
    ),
    "panda": (
        "大熊猫是一种生活在中国西南山区的哺乳动物，身体肥胖，毛色黑白相间，性情温和。"
        "它们主要以竹子为食，每天要花十几个小时进食。由于栖息地减少和繁殖率较低，大熊猫一度面临灭绝的危险。"
        "经过多年保护，野生大熊猫的数量已经有所回升。"
    ),
    "paper": (
        "造纸术是古代中国的重要发明之一。早期的人们把文字写在竹简、木牍或丝帛上，竹简笨重，丝帛昂贵，都不便于普及。"
        "后来，工匠们用树皮、麻头和破布等原料造出了价格便宜、书写方便的纸张。"
        "造纸术后来逐渐传到亚洲其他地区和欧洲，对人类文化的传播产生了深远影响。"
    ),
    "computer": (
        "计算机是一种能够按照程序自动进行计算和处理信息的电子设备。一台计算机通常由中央处理器、内存、"
        "存储设备以及输入和输出设备组成。早期的计算机体积庞大，一台机器要占满整个房间；"
        "随着集成电路技术的发展，计算机变得越来越小，性能却越来越强。"
    ),
    "gpu": (
        "图形处理器，英文简称GPU，最初是为了加快计算机图形的显示速度而设计的。与中央处理器相比，"
        "GPU拥有大量较为简单的计算单元，适合同时处理许多相同类型的运算。因此，近年来GPU被广泛用于科学计算和深度学习，"
        "成为训练大型神经网络的主要硬件。"
    ),
    "python": (
        "Python是一种广泛使用的高级编程语言，以语法简洁、代码易读而著称。它支持多种编程方式，"
        "拥有丰富的标准库和大量的第三方软件包，被应用于网站开发、数据分析、自动化运维和机器学习等领域。"
        "许多学校也把Python作为学生学习编程的第一门语言。"
    ),
    "tofu": (
        "豆腐是一种以大豆为主要原料制成的传统食品。制作时，先把大豆浸泡、磨成豆浆，煮沸以后加入盐卤或石膏，"
        "使豆浆凝固，再经过压制去掉多余的水分。豆腐营养丰富，含有较多的蛋白质，可以煎、炸、炖、凉拌，"
        "做法多种多样，在东亚各地都很受欢迎。"
    ),
    "solarterms": (
        "二十四节气是古代中国人根据太阳在一年中的位置变化而制定的一种时间体系，用来指导农业生产和日常生活。"
        "每个节气大约相隔十五天，例如立春、清明、夏至、秋分和冬至等。"
        "直到今天，许多地方仍然保留着与节气有关的风俗，比如冬至吃饺子或汤圆。"
    ),
    "photosynthesis": (
        "光合作用是绿色植物利用光能，把二氧化碳和水转化为有机物，并释放出氧气的过程。"
        "这一过程主要在叶片细胞的叶绿体中进行。光合作用不仅为植物自身的生长提供了能量和物质，"
        "也为地球上绝大多数生物提供了食物来源，同时维持了大气中氧气和二氧化碳的相对平衡。"
    ),
    "taipei": (
        "台北市位于台湾岛北部的台北盆地，是台湾北部的重要城市。市内交通便利，"
        "地铁系统连接了主要的商业区和住宅区。台北有许多热闹的夜市，游客可以在那里品尝各种地方小吃。"
        "市区周围群山环绕，居民周末常常到附近的山上散步或泡温泉。"
    ),
    "marathon": (
        "马拉松是一项长跑比赛项目，全程距离为42.195公里。据说这一项目的名称来源于古希腊的一个地名。"
        "现代马拉松比赛通常在城市道路上举行，除了全程马拉松，还常常设有半程马拉松和迷你马拉松等项目，"
        "让不同水平的跑步爱好者都能参与。"
    ),
    "earthquake": (
        "地震是地球内部能量突然释放，引起地面震动的一种自然现象。大多数地震发生在板块交界的地带。"
        "衡量地震大小常用震级，而地震对某一地点造成的破坏程度则用烈度来表示。"
        "为了减少损失，地震多发地区的建筑需要按照抗震标准进行设计和施工。"
    ),
    "tea": (
        "茶是世界上最受欢迎的饮料之一，原产于中国西南地区。根据加工方法的不同，"
        "茶叶可以分为绿茶、红茶、乌龙茶、白茶、黄茶和黑茶等几大类。饮茶的习惯后来传播到世界各地，"
        "形成了各具特色的茶文化，例如英国的下午茶和日本的茶道。"
    ),
    "go": (
        "围棋是一种两人对弈的策略性棋类游戏，使用黑白两色的棋子，在纵横各十九条线的棋盘上进行。"
        "双方轮流落子，以占据更多的地盘为胜。围棋规则简单，变化却极为复杂。2016年，"
        "一个计算机程序战胜了世界顶尖的职业棋手，引起了人们对人工智能的广泛关注。"
    ),
    "rainbow": (
        "彩虹是阳光照射到空气中的小水滴时，经过折射、反射和色散而形成的一种光学现象。"
        "常见的彩虹呈弧形，颜色从外到内依次为红、橙、黄、绿、蓝、靛、紫。雨后天晴、太阳位置较低的时候，"
        "背对太阳就比较容易看到彩虹。有时候还能在主虹外侧看到颜色顺序相反、亮度较暗的副虹。"
    ),
    "bicycle": (
        "自行车是一种靠人力踩踏驱动的两轮交通工具，结构简单，使用方便，不消耗燃料，也不排放废气。"
        "在许多城市，自行车是人们上班、上学和短途出行的重要工具。近年来，共享单车的出现让骑车出行变得更加便捷，"
        "人们只要用手机扫码就能开锁使用。"
    ),
    "database": (
        "数据库是按照一定结构组织、存储和管理数据的仓库。常见的关系型数据库把数据保存在一张张表格中，"
        "每一行表示一条记录，每一列表示一个字段，用户可以使用查询语言对数据进行增加、删除、修改和查询。"
        "银行、医院、学校和电商网站等几乎都离不开数据库的支持。"
    ),
    "huangshan": (
        "黄山位于安徽省南部，是中国著名的风景名胜区。山中峰峦众多，许多山峰海拔超过一千米，"
        "山上生长着形态奇特的松树，天气变化时常常出现壮观的云海。游客可以沿着石阶步行登山，也可以乘坐索道上山，"
        "山顶附近还有宾馆供游客住宿，方便第二天早上观看日出。"
    ),
    "ml": (
        "机器学习是人工智能的一个分支，研究如何让计算机从数据中自动学习规律，并利用这些规律对新的数据进行预测。"
        "根据训练数据是否带有标签，机器学习方法大致可以分为监督学习、无监督学习和强化学习等类型。"
        "常见的应用包括语音识别、图像分类和推荐系统。"
    ),
    "hanzi": (
        "汉字是世界上历史最悠久的文字之一，已经连续使用了三千多年。汉字的字形经历了甲骨文、金文、篆书、隶书和楷书等"
        "阶段的演变，笔画逐渐变得平直，书写也越来越方便。二十世纪中叶以后，中国大陆推行简化字，"
        "而台湾、香港和澳门等地区仍然主要使用繁体字。两种字形之间的大多数字可以一一对应，"
        "但也有少数一个简化字对应几个繁体字的情况。因此，把简体文本转换成繁体文本时，往往需要结合上下文来判断，"
        "而从繁体转换到简体则相对简单一些。在计算机出现以后，汉字的输入、显示和编码也成为一个专门的研究领域，"
        "人们先后设计了拼音、字形等多种输入方法。"
    ),
    "coffee": (
        "咖啡是用烘焙过的咖啡豆研磨、冲泡制成的饮料，含有咖啡因，能够让人提神。"
        "咖啡树原产于非洲，后来被引种到世界上许多热带地区。常见的咖啡饮品有美式咖啡、拿铁和卡布奇诺等。"
        "在不少城市，咖啡馆已经成为人们工作、学习和会友的场所。"
    ),
    "desert": (
        "沙漠是降水稀少、蒸发强烈、植被稀疏的地区，地表多被沙子或砾石覆盖。沙漠中白天气温很高，"
        "夜晚却可能降到很低。生活在沙漠中的动植物形成了许多适应干旱的特点，例如骆驼可以长时间不喝水，"
        "仙人掌的叶子退化成刺，以减少水分的蒸发。"
    ),
    "olympics": (
        "现代奥林匹克运动会是世界上规模最大的综合性体育赛事，每四年举办一次，分为夏季奥运会和冬季奥运会。"
        "奥运会的标志是五个相互套连的圆环，象征五大洲的团结。运动员们在田径、游泳、体操、球类等项目上展开竞争，"
        "争夺金牌、银牌和铜牌。"
    ),
    "internet": (
        "互联网是由世界各地无数计算机网络互相连接而成的全球性网络。人们通过互联网浏览网页、收发电子邮件、"
        "观看视频和进行网上购物。互联网上的数据被分成许多小的数据包，沿着不同的路径传输，到达目的地以后再重新组合。"
        "互联网的普及深刻地改变了人们获取信息和交流的方式。"
    ),
    "midautumn": (
        "中秋节在每年农历八月十五，是中国的传统节日之一。这一天的月亮通常又圆又亮，象征着团圆。"
        "中秋节期间，人们会和家人一起赏月、吃月饼。月饼的口味多种多样，有豆沙、五仁、莲蓉和蛋黄等。"
        "许多在外地工作的人也会尽量回家，与亲人共度佳节。"
    ),
    "volcano": (
        "火山是地下岩浆喷出地表而形成的山体。火山喷发时，炽热的岩浆、火山灰和气体会从火山口喷出，"
        "对周边地区造成严重影响。根据活动情况，火山可以分为活火山、休眠火山和死火山。"
        "火山灰虽然会带来危害，但风化后形成的土壤往往非常肥沃。"
    ),
    "abacus": (
        "算盘是一种古老的计算工具，由木框、横梁和一串串可以上下拨动的算珠组成。"
        "熟练的使用者可以用算盘快速完成加、减、乘、除等运算。在电子计算器普及之前，算盘被广泛用于商店和账房。"
        "如今，一些学校仍然开设珠算课程，用来锻炼学生的心算能力和注意力。"
    ),
}

# --- deliberate near-duplicates (built from the paragraphs above) --------------------

# A sentence added at the end.
PAYMENT_PLUS = NEWS["payment"] + "社区还计划明年开设智能手机拍照和视频通话课程。"
# A few characters changed: a different holiday and a different visitor cap.
WATERTOWN_EDITED = NEWS["watertown"].replace("国庆假期", "五一假期").replace("两万人次", "三万人次")
# Punctuation and spacing changes only (applied before the s2twp conversion).
HANZI_PUNCT = (
    WIKI["hanzi"]
    .replace("的演变，笔画", "的演变；笔画")
    .replace("简单一些。", "简单一些！")
    .replace("中国大陆推行简化字", "中国大陆推行 简化字")
    + "  "
)
# NEWS["marathon"] copied into the traditional file: s2twp also rewrites words the
# Taiwan way (设置 -> 設定), which t2s does not undo, so the copy comes back from
# normalization close to, but not the same as, the original.
MARATHON_TW_SOURCE = NEWS["marathon"]

# --- the two files, line by line ------------------------------------------------------

SHORT_NEWS = "今天天气很好。"
SHORT_WIKI = "谢谢大家的支持！"  # converted to traditional like the rest of the wiki file
MALFORMED = '{"id": "news-023", "text": "这一行的引号没有闭合, "source": "broken}'


def _rec(rid: str, text) -> str:
    return json.dumps({"id": rid, "text": text}, ensure_ascii=False)


def news_lines() -> list[str]:
    """news_zh.jsonl: simplified; ids are news-NNN with NNN the 0-based line number."""
    order = list(NEWS)
    items: list[tuple[str, object]] = []  # (kind, payload)
    items += [("text", NEWS[k]) for k in order[0:10]]
    items.append(("text", SHORT_NEWS))  # 10: too short
    items += [("text", NEWS[k]) for k in order[10:15]]
    items.append(("text", NEWS["subway"]))  # 16: exact duplicate of news-001
    items += [("text", NEWS[k]) for k in order[15:20]]
    items.append(("text", PAYMENT_PLUS))  # 22: near duplicate of news-011 (sentence added)
    items.append(("raw", MALFORMED))  # 23: malformed JSON
    items += [("text", NEWS[k]) for k in order[20:26]]
    items.append(("notext", None))  # 30: no text field
    items += [("text", NEWS[k]) for k in order[26:32]]
    items.append(("text", WATERTOWN_EDITED))  # 37: near duplicate of news-026 (characters changed)
    items += [("text", NEWS[k]) for k in order[32:]]
    return _render("news", items)


def wiki_lines(s2tw) -> list[str]:
    """wiki_zh_tw.jsonl: Taiwan traditional; ids are wiki-NNN with NNN the 0-based line number."""
    order = list(WIKI)
    items: list[tuple[str, object]] = []
    items += [("text", s2tw(WIKI[k])) for k in order[0:8]]
    items.append(("text", NEWS["ev"]))  # 8: exact duplicate of news-015, left in simplified script
    items += [("text", s2tw(WIKI[k])) for k in order[8:14]]
    items.append(("text", s2tw(SHORT_WIKI)))  # 15: too short
    items.append(("number", 20240101))  # 16: text is a number
    items += [("text", s2tw(WIKI[k])) for k in order[14:20]]
    items.append(("text", s2tw(WIKI["python"])))  # 23: exact duplicate of wiki-006
    items += [("text", s2tw(WIKI[k])) for k in order[20:24]]
    items.append(("text", s2tw(HANZI_PUNCT)))  # 28: near duplicate of wiki-024 (punctuation, spaces)
    items.append(("text", s2tw(MARATHON_TW_SOURCE)))  # 29: near duplicate of news-003 (traditional copy)
    items += [("text", s2tw(WIKI[k])) for k in order[24:]]
    return _render("wiki", items)


def _render(prefix: str, items: list[tuple[str, object]]) -> list[str]:
    lines = []
    for n, (kind, payload) in enumerate(items):
        rid = f"{prefix}-{n:03d}"
        if kind == "text":
            lines.append(_rec(rid, payload))
        elif kind == "number":
            lines.append(_rec(rid, payload))
        elif kind == "notext":
            lines.append(json.dumps({"id": rid, "title": "没有正文的记录"}, ensure_ascii=False))
        elif kind == "raw":
            assert f'"{rid}"' in payload, "keep the malformed line's id in step with its line number"
            lines.append(payload)
        else:
            raise ValueError(kind)
    return lines


# (file, 0-based line, id, what it is, expected fate, detail)
DELIBERATE = [
    ("news_zh.jsonl", 10, "news-010", "too short (7 characters)", "filtered", "too_short"),
    ("news_zh.jsonl", 16, "news-016", "exact copy of news-001", "exact_dup", "news-001"),
    ("news_zh.jsonl", 22, "news-022", "news-011 plus one sentence", "near_dup", "news-011"),
    ("news_zh.jsonl", 23, "news-023", "malformed JSON", "rejected", "bad json"),
    ("news_zh.jsonl", 30, "news-030", "no text field", "rejected", "no text"),
    ("news_zh.jsonl", 37, "news-037", "news-026 with two words changed", "near_dup", "news-026"),
    ("wiki_zh_tw.jsonl", 8, "wiki-008", "exact copy of news-015 (simplified)", "exact_dup", "news-015"),
    ("wiki_zh_tw.jsonl", 15, "wiki-015", "too short (8 characters)", "filtered", "too_short"),
    ("wiki_zh_tw.jsonl", 16, "wiki-016", "text is a number", "rejected", "text not a string"),
    ("wiki_zh_tw.jsonl", 23, "wiki-023", "exact copy of wiki-006", "exact_dup", "wiki-006"),
    ("wiki_zh_tw.jsonl", 28, "wiki-028", "wiki-024 with punctuation/space changes", "near_dup", "wiki-024"),
    ("wiki_zh_tw.jsonl", 29, "wiki-029", "news-003 in traditional script", "near_dup", "news-003"),
]


def _shingles(text: str, n: int = 5) -> set[str]:
    text = "".join(text.split())
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


def check(files: dict[str, list[str]], t2s) -> None:
    """Fail loudly if DELIBERATE no longer matches the files (after editing the lists above)."""
    texts = {}
    for lines in files.values():
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec.get("text"), str):
                texts[rec["id"]] = t2s(rec["text"])
    for name, n, rid, _what, fate, detail in DELIBERATE:
        line = files[name][n]
        assert f'"{rid}"' in line, (name, n, rid)
        if fate == "exact_dup":
            assert texts[rid] == texts[detail], rid
        elif fate == "near_dup":
            a, b = _shingles(texts[rid]), _shingles(texts[detail])
            jaccard = len(a & b) / len(a | b)
            assert texts[rid] != texts[detail] and 0.85 <= jaccard < 1.0, (rid, jaccard)
        elif fate == "filtered":
            assert len(texts[rid]) < 20, rid


def main() -> None:
    s2tw = opencc.OpenCC("s2twp").convert
    t2s = opencc.OpenCC("t2s").convert
    files = {"news_zh.jsonl": news_lines(), "wiki_zh_tw.jsonl": wiki_lines(s2tw)}
    check(files, t2s)
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        path = SAMPLE_DIR / name
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")
        print(f"wrote {path} ({len(lines)} lines)")


if __name__ == "__main__":
    main()
